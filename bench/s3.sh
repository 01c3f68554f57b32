#!/usr/bin/env bash
# S3-backed ftpsd against local-disk ftpsd: one server, two users (one with a
# directory root, one with s3://bench/files on SeaweedFS), the same file and
# the same curl, in the same run; then the server's peak RSS while 20 curls
# upload to S3 at once (and, for comparison, to disk). See bench/README.md.
#
# It creates (and removes again, also on failure or Ctrl-C): one network
# namespace with only loopback, a work directory, and the processes of
# SeaweedFS and ftpsd inside it. The host's network and nftables are not
# touched (ftpsd runs with [firewall] mode = "off": pinholes are not what is
# measured here).
#
# usage: sudo bench/s3.sh [--size-mib N] [--runs N] [--parallel N] [--parallel-mib N] [--out FILE] [--smoke]
set -euo pipefail

SIZE_MIB=512 RUNS=3 PAR=20 PAR_MIB=64 OUT="" SMOKE=0 TMPBASE=/tmp
while [ $# -gt 0 ]; do
	case $1 in
	--size-mib) SIZE_MIB=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--parallel) PAR=$2; shift 2 ;;
	--parallel-mib) PAR_MIB=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--tmp) TMPBASE=$2; shift 2 ;;
	--smoke) SMOKE=1; shift ;;
	-h | --help) sed -n '2,13p' "$0"; exit 0 ;;
	*) echo "s3.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
for n in "$SIZE_MIB" "$RUNS" "$PAR" "$PAR_MIB"; do
	case $n in '' | *[!0-9]*) echo "s3.sh: not a number: $n" >&2; exit 2 ;; esac
done
[ "$SMOKE" = 1 ] && { SIZE_MIB=16 RUNS=1 PAR=4 PAR_MIB=16; }
[ "$(id -u)" = 0 ] || { echo "s3.sh: run as root (it makes a network namespace)" >&2; exit 1; }
for c in curl ip go awk; do command -v "$c" >/dev/null || { echo "s3.sh: $c not found" >&2; exit 1; }; done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ -n "$OUT" ] || { [ "$SMOKE" = 1 ] && OUT=/dev/null || OUT="$ROOT/bench/results-s3.md"; }
NS="ftpsds3bench-$$"
WORK=$(mktemp -d "$TMPBASE/ftpsd-s3bench.XXXXXX")
PIDS=()
cleanup() {
	trap - EXIT INT TERM
	# $! of `ip netns exec CMD &` is CMD itself (ip execs it). SeaweedFS
	# takes about 10 s over SIGTERM: SIGKILL after 5 s.
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for i in $(seq 1 50); do
		alive=0
		for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ "$alive" = 0 ] && break
		sleep 0.1
	done
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	[ -e "/run/netns/$NS" ] && ip netns delete "$NS"
	# weed puts its gRPC sockets in /tmp whatever -dir says.
	rm -f /tmp/seaweedfs-master-grpc-19333.sock /tmp/seaweedfs-volume-grpc-18080.sock \
		/tmp/seaweedfs-filer-grpc-18888.sock /tmp/seaweedfs-s3-grpc-18333.sock
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "s3.sh: interrupted" >&2; exit 130' INT TERM
in_ns() { ip netns exec "$NS" "$@"; }

# SeaweedFS: the binary internal/s3test caches (built here if missing).
VER=$(awk '$1 == "github.com/seaweedfs/seaweedfs" {print $2}' "$ROOT/testdata/seaweedfs/go.mod")
WEED="${XDG_CACHE_HOME:-$HOME/.cache}/ftpsd/weed-$VER"
if [ ! -x "$WEED" ]; then
	echo "building SeaweedFS $VER into $WEED (several minutes)..."
	mkdir -p "$(dirname "$WEED")"
	(cd "$ROOT/testdata/seaweedfs" && go build -o "$WEED.build-$$" github.com/seaweedfs/seaweedfs/weed)
	mv "$WEED.build-$$" "$WEED"
fi
mkdir -p "$WORK/bin" "$WORK/weed/data" "$WORK/disk" "$WORK/state"
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$WORK/bin/ftpsd" ./cmd/ftpsd)

ip netns add "$NS"
in_ns ip link set lo up

AK=bench-access SK=bench-secret-key
cat >"$WORK/weed/s3.json" <<EOF
{"identities":[{"name":"bench","credentials":[{"accessKey":"$AK","secretKey":"$SK"}],"actions":["Admin","Read","List","Tagging","Write"]}]}
EOF
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$AK" "$SK" >"$WORK/creds"
chmod 600 "$WORK/creds"
ip netns exec "$NS" "$WEED" server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$WORK/weed/data" \
	-master.port=9333 -master.port.grpc=19333 -volume.port=8080 -volume.port.grpc=18080 \
	-filer -filer.port=8888 -filer.port.grpc=18888 -filer.localSocket="$WORK/weed/filer.sock" \
	-s3 -s3.port=8333 -s3.port.grpc=18333 -s3.port.iceberg=0 -s3.port.lance=0 \
	-s3.localSocket="$WORK/weed/s3.sock" -s3.config="$WORK/weed/s3.json" \
	-master.volumeSizeLimitMB=1024 -volume.max=64 -master.telemetry=false >"$WORK/weed.log" 2>&1 &
PIDS+=($!)
s3() { in_ns curl -sS --fail --aws-sigv4 "aws:amz:us-east-1:s3" -u "$AK:$SK" "$@"; }
for i in $(seq 1 360); do
	if s3 -X PUT http://127.0.0.1:8333/bench >/dev/null 2>&1 &&
		s3 -T /dev/null http://127.0.0.1:8333/bench/probe >/dev/null 2>&1; then
		break
	fi
	[ "$i" = 360 ] && { echo "s3.sh: SeaweedFS did not come up:" >&2; tail -20 "$WORK/weed.log" >&2; exit 1; }
	sleep 0.25
done

PASS=bench-password
HASH=$(printf '%s\n' "$PASS" | "$WORK/bin/ftpsd" passwd 2>/dev/null | tail -1)
cat >"$WORK/ftpsd.toml" <<EOF
[server]
listen = ["127.0.0.1:2121"]
max_clients_per_ip = 100
data_timeout = "60s"

[passive]
ports = "50000-50199"

[firewall]
mode = "off"

[storage]
state_dir = "$WORK/state"

[storage.s3]
endpoint = "http://127.0.0.1:8333"
region = "us-east-1"
path_style = true
credentials_file = "$WORK/creds"

[[user]]
name = "disk"
password_hash = "$HASH"
root = "$WORK/disk"

[[user]]
name = "s3"
password_hash = "$HASH"
root = "s3://bench/files"
EOF
FTPSD_PID=""
start_ftpsd() { # a fresh ftpsd, so that one round's heap does not count in the next
	if [ -n "$FTPSD_PID" ]; then
		kill "$FTPSD_PID"
		wait "$FTPSD_PID" || true
	fi
	ip netns exec "$NS" "$WORK/bin/ftpsd" serve -c "$WORK/ftpsd.toml" >>"$WORK/ftpsd.log" 2>&1 &
	FTPSD_PID=$!
	PIDS+=("$FTPSD_PID")
	for i in $(seq 1 100); do
		in_ns bash -c 'exec 3<>/dev/tcp/127.0.0.1/2121' 2>/dev/null && return
		sleep 0.1
	done
	echo "s3.sh: ftpsd did not start:" >&2; cat "$WORK/ftpsd.log" >&2; exit 1
}
start_ftpsd

echo "making a $SIZE_MIB MiB file and $PAR files of $PAR_MIB MiB..."
head -c $((SIZE_MIB << 20)) /dev/urandom >"$WORK/big.bin"
head -c $((PAR_MIB << 20)) /dev/urandom >"$WORK/par.bin"

ftp() { # user, curl args...
	local u=$1; shift
	in_ns curl -sS --fail --ssl-reqd --insecure --max-time 600 --user "$u:$PASS" "$@"
}
mbps() { awk '{printf "%.0f", $1 / 1e6}'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A RES
for run in $(seq 1 "$RUNS"); do
	for u in disk s3; do
		up=$(ftp "$u" -T "$WORK/big.bin" -w '%{speed_upload}' ftp://127.0.0.1:2121/big.bin | mbps)
		down=$(ftp "$u" -o /dev/null -w '%{speed_download}' ftp://127.0.0.1:2121/big.bin | mbps)
		RES[$u-up]+="$up " RES[$u-down]+="$down "
		echo "run $run $u: upload $up MB/s, download $down MB/s"
	done
	# The store alone: the same file straight to SeaweedFS with curl (no FTP, no TLS).
	up=$(s3 -T "$WORK/big.bin" -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -w '%{speed_upload}' -o /dev/null http://127.0.0.1:8333/bench/direct.bin | mbps)
	down=$(s3 -o /dev/null -w '%{speed_download}' http://127.0.0.1:8333/bench/direct.bin | mbps)
	RES[store-up]+="$up " RES[store-down]+="$down "
	echo "run $run S3 store alone: upload $up MB/s, download $down MB/s"
done

status() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
peak() { # user -> peak RSS (MiB) of ftpsd during PAR parallel uploads
	local u=$1 pids=() p
	ftp "$u" -T "$WORK/creds" ftp://127.0.0.1:2121/warm-up >/dev/null # first session and TLS set-up
	echo 5 >"/proc/$FTPSD_PID/clear_refs" # resets VmHWM to the current RSS
	local before; before=$(status "$FTPSD_PID" VmRSS)
	for i in $(seq 1 "$PAR"); do
		ftp "$u" -T "$WORK/par.bin" "ftp://127.0.0.1:2121/par-$i.bin" &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || { echo "s3.sh: a parallel upload failed" >&2; exit 1; }; done
	echo "$before $(status "$FTPSD_PID" VmHWM)"
}
start_ftpsd
peak s3 >"$WORK/peak"
read -r S3_BEFORE S3_PEAK <"$WORK/peak"
start_ftpsd
peak disk >"$WORK/peak"
read -r DISK_BEFORE DISK_PEAK <"$WORK/peak"
echo "$PAR parallel uploads of $PAR_MIB MiB: peak RSS s3 $((S3_PEAK / 1024)) MiB (from $((S3_BEFORE / 1024))), disk $((DISK_PEAK / 1024)) MiB (from $((DISK_BEFORE / 1024)))"
grep -q 'result="aborted\|result="failed' "$WORK/ftpsd.log" && { echo "s3.sh: a transfer failed:" >&2; grep 'result="a\|result="f' "$WORK/ftpsd.log" >&2; exit 1; }

med() { echo "$1" | tr ' ' '\n' | grep . | median; }
runs() { echo $1 | sed 's/ /, /g'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
row() { # label, disk values, s3 values, store values
	local d s st
	d=$(med "$2") s=$(med "$3") st=$(med "$4")
	printf '| %s | %s (%s) | %s (%s) | %s | %s (%s) | %s |\n' "$1" "$d" "$(runs "$2")" "$s" "$(runs "$3")" "$(ratio "$s" "$d")" \
		"$st" "$(runs "$4")" "$(ratio "$s" "$st")"
}
{
	echo "## ftpsd on S3 (SeaweedFS) against ftpsd on local disk"
	echo
	echo "- Machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
	echo "- ftpsd at commit $(cd "$ROOT" && git rev-parse --short HEAD), $(go version | awk '{print $3}'); SeaweedFS $VER ($("$WEED" version 2>/dev/null | awk '/version/ {print $2, $3; exit}')), single process (master, volume, filer, S3 gateway) on the same machine; $(curl --version | head -1 | awk '{print $1, $2}')"
	echo "- One ftpsd, one namespace, loopback only; user \`disk\` has a directory root on $(df -T "$WORK" | awk 'NR==2 {print $2}'), user \`s3\` has root s3://bench/files (plain HTTP to the store); explicit FTPS (TLS), passive; [firewall] mode = \"off\""
	echo "- $RUNS run(s) of one curl stream with a $SIZE_MIB MiB file; then $PAR curls uploading $PAR_MIB MiB each at once"
	echo "- Run at $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "Medians of the runs; every run in brackets. \"Store alone\" is the same file sent straight to SeaweedFS"
	echo "with curl (one PUT or GET, plain HTTP, no FTP or TLS): what the store itself takes and gives on this machine."
	echo
	echo "| Measure | ftpsd, disk | ftpsd, S3 | S3 / disk | store alone | ftpsd S3 / store alone |"
	echo "|---|---|---|---|---|---|"
	row "Upload, one curl stream, MB/s" "${RES[disk-up]}" "${RES[s3-up]}" "${RES[store-up]}"
	row "Download, one curl stream, MB/s" "${RES[disk-down]}" "${RES[s3-down]}" "${RES[store-down]}"
	printf '| Peak RSS of ftpsd during %s parallel uploads of %s MiB, MiB | %s | %s | %s | | |\n' "$PAR" "$PAR_MIB" \
		"$((DISK_PEAK / 1024))" "$((S3_PEAK / 1024))" "$(ratio "$S3_PEAK" "$DISK_PEAK")"
	echo
	echo "Peak RSS is VmHWM from /proc/PID/status, reset (clear_refs) just before the uploads start."
	echo "Each round has a fresh ftpsd (after one warm-up upload): RSS before was $((S3_BEFORE / 1024)) MiB (S3 round), $((DISK_BEFORE / 1024)) MiB (disk round)."
	echo "An S3 upload holds one 8 MiB part buffer ($PAR × 8 MiB = $((PAR * 8)) MiB for $PAR uploads); the rest is Go's"
	echo "garbage-collector headroom (the heap may grow to twice what is live before a collection) and per-session buffers."
	echo "SeaweedFS runs on the same 2 cores, so the S3 figures include its CPU time; a multipart upload costs it more"
	echo "than one PUT of the whole file, which is what \"store alone\" measures."
} | tee "$OUT"
