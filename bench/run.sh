#!/usr/bin/env bash
# Side-by-side FTPS benchmark: ftpsd against vsftpd, on the same machine, in
# the same run, with the same certificate, user, files and firewall. See
# bench/README.md for what each number means.
#
# It creates (and removes again, also on failure or Ctrl-C): two network
# namespaces joined by a veth pair, a temporary system user, a PAM service
# file, two cgroups, a work directory with the test files, and the two
# servers' processes. Traffic stays inside the two namespaces (198.18.0.0/24,
# part of the block RFC 2544 sets aside for benchmarks); the host's own
# network and nftables ruleset are never touched.
#
# usage: sudo bench/run.sh [--smoke] [--runs N] [--only LIST] [--out FILE] ...
set -euo pipefail

usage() {
	cat <<'EOF'
usage: bench/run.sh [options]        (as root)

  --runs N             runs of every measurement (default 3; the table shows the median and every run)
  --smoke              tiny sizes, one run, well under a minute (for CI)
  --only LIST          comma-separated subset of: throughput,ceiling,sessions,idle,pasv,attack,mirror,many
  --size-mib N         size of the download/upload file (default 1024)
  --session-seconds N  how long the session-rate clients run (default 20)
  --clients N          parallel session-rate clients (default 16)
  --idle N             idle sessions for the memory measurement (default 200)
  --mirror-files N     small files (8 KiB, in ten folders) for the lftp mirror (default 1000)
  --many N             idle TLS sessions held at once by ftpsd for "many" (default 10000)
  --many-vsftpd N      the same for vsftpd (default 1000: 3 processes per session, and its per-address cap)
  --many-after N       seconds after the many sessions close before memory is read again (default 60)
  --pasv-samples N     PASV latency samples per run (default 500)
  --rounds N           sha512crypt rounds for vsftpd's user (default: matched to the nearest bcrypt cost)
  --tmp DIR            where the work directory (test files, ~2x size-mib) goes (default /tmp)
  --out FILE           write the markdown table here (default bench/results.md; with --smoke, nowhere)
  --pause N            after the set-up, wait N seconds (at most 3600) before measuring, for poking at
                       it by hand: the variables are in WORK/env.sh (--only none: measure nothing)
  --install            apt-get install what is missing (vsftpd, curl, nftables, ...) and keep
                       the vsftpd service of the package stopped and disabled
EOF
}

RUNS=3 SIZE_MIB=1024 SESSION_SECS=20 CLIENTS=16 IDLE=200 PASV_N=500 ROUNDS=0
MIRROR_FILES=1000 MANY=10000 MANY_VS=1000 MANY_AFTER=60
SMOKE=0 ONLY="throughput,ceiling,sessions,idle,pasv,attack,mirror,many" OUT="" OUT_SET=0 TMPBASE=/tmp INSTALL=0 PAUSE=0
SETTLE=3s HOLD=4s HASH_OPTS=()
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift 2 ;;
	--smoke) SMOKE=1; shift ;;
	--only) ONLY=$2; shift 2 ;;
	--size-mib) SIZE_MIB=$2; shift 2 ;;
	--session-seconds) SESSION_SECS=$2; shift 2 ;;
	--clients) CLIENTS=$2; shift 2 ;;
	--idle) IDLE=$2; shift 2 ;;
	--mirror-files) MIRROR_FILES=$2; shift 2 ;;
	--many) MANY=$2; shift 2 ;;
	--many-vsftpd) MANY_VS=$2; shift 2 ;;
	--many-after) MANY_AFTER=$2; shift 2 ;;
	--pasv-samples) PASV_N=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--tmp) TMPBASE=$2; shift 2 ;;
	--out) OUT=$2; OUT_SET=1; shift 2 ;;
	--install) INSTALL=1; shift ;;
	--pause) PAUSE=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done
if [ "$SMOKE" = 1 ]; then
	RUNS=1 SIZE_MIB=16 SESSION_SECS=2 IDLE=20 PASV_N=50 SETTLE=1s HOLD=2s HASH_OPTS=(-turns 1 -tries 1)
	MIRROR_FILES=40 MANY=100 MANY_VS=20 MANY_AFTER=6
fi
for n in "$RUNS" "$SIZE_MIB" "$SESSION_SECS" "$CLIENTS" "$IDLE" "$PASV_N" "$ROUNDS" "$PAUSE" "$MIRROR_FILES" "$MANY" "$MANY_VS" "$MANY_AFTER"; do
	case $n in '' | *[!0-9]*) echo "run.sh: not a number: $n" >&2; exit 2 ;; esac
done
[ "$RUNS" -ge 1 ] && [ "$RUNS" -le 20 ] || { echo "run.sh: --runs must be 1..20" >&2; exit 2; }
[ "$SESSION_SECS" -ge 1 ] && [ "$SESSION_SECS" -le 300 ] || { echo "run.sh: --session-seconds must be 1..300" >&2; exit 2; }
[ "$IDLE" -ge 1 ] && [ "$IDLE" -le 1000 ] || { echo "run.sh: --idle must be 1..1000" >&2; exit 2; }
[ "$PAUSE" -le 3600 ] || { echo "run.sh: --pause must be 0..3600" >&2; exit 2; }
[ "$SIZE_MIB" -ge 1 ] && [ "$SIZE_MIB" -le 8192 ] || { echo "run.sh: --size-mib must be 1..8192" >&2; exit 2; }
[ "$MIRROR_FILES" -ge 10 ] && [ "$MIRROR_FILES" -le 20000 ] || { echo "run.sh: --mirror-files must be 10..20000" >&2; exit 2; }
[ "$MANY" -ge 1 ] && [ "$MANY" -le 20000 ] || { echo "run.sh: --many must be 1..20000" >&2; exit 2; }
[ "$MANY_VS" -ge 1 ] && [ "$MANY_VS" -le 1000 ] || { echo "run.sh: --many-vsftpd must be 1..1000 (vsftpd's max_per_ip here)" >&2; exit 2; }
[ "$MANY_AFTER" -le 600 ] || { echo "run.sh: --many-after must be 0..600" >&2; exit 2; }
want() { case ",$ONLY," in *",$1,"*) return 0 ;; esac; return 1; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "$OUT_SET" = 0 ] && [ "$SMOKE" = 0 ]; then OUT=$ROOT/bench/results.md; fi

log() { printf '\n=== %s\n' "$*"; }
die() { echo "run.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (namespaces, nftables, cgroups, a temporary user)"

# ---------------------------------------------------------------- tools
if [ "$INSTALL" = 1 ]; then
	had_vsftpd=0
	dpkg-query -W -f='${Status}' vsftpd 2>/dev/null | grep -q 'install ok installed' && had_vsftpd=1
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq vsftpd curl lftp nftables iproute2 util-linux perl openssl >/dev/null
	# The package may have started its own server on the host: stop it and
	# keep it from starting at boot (this script runs its own instance).
	if [ "$had_vsftpd" = 0 ]; then
		if [ -d /run/systemd/system ]; then
			systemctl disable --now vsftpd >/dev/null 2>&1 || true
		elif [ -x /etc/init.d/vsftpd ]; then
			/etc/init.d/vsftpd stop >/dev/null 2>&1 || true
			update-rc.d vsftpd disable >/dev/null 2>&1 || true
		fi
	fi
fi
for c in ip nft nsenter curl lftp vsftpd perl openssl go useradd userdel usermod ss; do
	command -v "$c" >/dev/null || die "$c not found (Debian: apt-get install -y vsftpd curl lftp nftables iproute2 util-linux perl openssl passwd; or run with --install)"
done

# Many idle sessions: every one is a socket in ftpsd and one in loadgen
# (children inherit the limit; Go raises its soft limit to the hard one).
FDS=$((MANY + 1000))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$FDS" ]; then
	ulimit -Hn "$FDS" || die "cannot raise the open-file limit to $FDS (--many $MANY)"
fi
[ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt "$FDS" ] && ulimit -Sn "$FDS"

# ---------------------------------------------------------------- names
ID=$$
SRV_NS=ftpsdbench-srv-$ID
CLI_NS=ftpsdbench-cli-$ID
VETH_S=fbs$ID
VETH_C=fbc$ID
SRV_IP=198.18.0.1 CLI_IP=198.18.0.2 ATK_IP=198.18.0.3
VS_PORT=21 FD_PORT=2121 TLS_PORT=4433
VS_RANGE=40000-40999 FD_RANGE=50000-50999
BUSER=ftpsdbench$ID
PAM_SERVICE=ftpsd-bench-$ID
PAM_FILE=/etc/pam.d/$PAM_SERVICE
CGROOT=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
if [ -z "$CGROOT" ]; then
	CGROOT=$(awk '$3 == "cgroup" && $4 ~ /(^|,)cpuacct(,|$)/ { print $2; exit }' /proc/mounts)
fi
[ -n "$CGROOT" ] || die "no cgroup v2 (or v1 cpuacct) hierarchy mounted"
CG=$CGROOT/ftpsd-bench-$ID
declare -A PID=() PORT=([vsftpd]=$VS_PORT [ftpsd]=$FD_PORT) RANGE=([vsftpd]=$VS_RANGE [ftpsd]=$FD_RANGE)

# ---------------------------------------------------------------- teardown
created_user=0 WORK="" SLEEP_PID="" TLS_PID=""
stop_server() {
	local name=$1 p
	if [ -n "${PID[$name]:-}" ]; then
		kill -TERM "${PID[$name]}" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "${PID[$name]}" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "${PID[$name]}" 2>/dev/null || true
		wait "${PID[$name]}" 2>/dev/null || true
		PID[$name]=""
	fi
	# Session processes (vsftpd forks them) that outlived their parent.
	if [ -f "$CG/$name/cgroup.procs" ]; then
		for p in $(cat "$CG/$name/cgroup.procs"); do kill -KILL "$p" 2>/dev/null || true; done
		for _ in $(seq 50); do [ -z "$(cat "$CG/$name/cgroup.procs")" ] && break; sleep 0.1; done
	fi
}
cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	[ -n "$SLEEP_PID" ] && kill "$SLEEP_PID" 2>/dev/null
	[ -n "$TLS_PID" ] && kill "$TLS_PID" 2>/dev/null && wait "$TLS_PID" 2>/dev/null
	stop_server vsftpd
	stop_server ftpsd
	for d in "$CG/vsftpd" "$CG/ftpsd" "$CG"; do [ -d "$d" ] && rmdir "$d"; done
	for ns in "$SRV_NS" "$CLI_NS"; do
		[ -e "/run/netns/$ns" ] && ip netns delete "$ns"
	done
	[ "$created_user" = 1 ] && userdel "$BUSER" 2>/dev/null
	rm -f "$PAM_FILE"
	[ -n "$WORK" ] && rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM

# Leftovers of an earlier run that was killed before its cleanup could run
# (SIGKILL, power cut): only names this script makes, and only those whose
# run.sh process is gone.
cleanup_stale() {
	local pid name p d
	stale() { [ -n "$1" ] && [ "$1" != "$$" ] && ! kill -0 "$1" 2>/dev/null; }
	for name in $(ip netns list 2>/dev/null | awk '{print $1}'); do
		pid=${name#ftpsdbench-???-}
		case $name in ftpsdbench-srv-* | ftpsdbench-cli-*) stale "$pid" && ip netns delete "$name" && echo "removed stale namespace $name" ;; esac
	done
	for d in "$CGROOT"/ftpsd-bench-*; do
		[ -d "$d" ] || continue
		pid=${d##*/ftpsd-bench-}
		stale "$pid" || continue
		for p in $(cat "$d"/*/cgroup.procs 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
		sleep 0.5
		for p in "$d"/*/; do rmdir "$p" 2>/dev/null; done
		rmdir "$d" 2>/dev/null && echo "removed stale cgroup $d"
	done
	for name in $(getent passwd | awk -F: '$5 == "ftpsd bench temporary user" {print $1}'); do
		pid=${name#ftpsdbench}
		stale "$pid" && userdel "$name" && echo "removed stale user $name"
	done
	for p in /etc/pam.d/ftpsd-bench-*; do
		[ -f "$p" ] || continue
		pid=${p##*/ftpsd-bench-}
		stale "$pid" && rm -f "$p" && echo "removed stale $p"
	done
	for d in "$TMPBASE"/ftpsd-bench-*.*; do
		[ -d "$d" ] || continue
		pid=${d##*/ftpsd-bench-}
		pid=${pid%%.*}
		stale "$pid" && rm -rf "$d" && echo "removed stale $d"
	done
	return 0
}
cleanup_stale

# ---------------------------------------------------------------- build
WORK=$(mktemp -d "$TMPBASE/ftpsd-bench-$ID.XXXXXX")
chmod 755 "$WORK"
BIN=$WORK/bin
RESULTS=$WORK/results.jsonl
INFO=$WORK/info.txt
log "building ftpsd and loadgen"
(cd "$ROOT" && go build -o "$BIN/ftpsd" ./cmd/ftpsd && go build -o "$BIN/loadgen" ./bench/loadgen)
LOADGEN=$BIN/loadgen

# ---------------------------------------------------------------- network
log "namespaces $SRV_NS (server $SRV_IP) and $CLI_NS (client $CLI_IP, attacker $ATK_IP)"
ip netns add "$SRV_NS"
ip netns add "$CLI_NS"
ip link add "$VETH_S" netns "$SRV_NS" type veth peer name "$VETH_C" netns "$CLI_NS"
ip -n "$SRV_NS" addr add "$SRV_IP/24" dev "$VETH_S"
ip -n "$CLI_NS" addr add "$CLI_IP/24" dev "$VETH_C"
ip -n "$CLI_NS" addr add "$ATK_IP/24" dev "$VETH_C"
for ns in "$SRV_NS" "$CLI_NS"; do ip -n "$ns" link set lo up; done
ip -n "$SRV_NS" link set "$VETH_S" up
ip -n "$CLI_NS" link set "$VETH_C" up
in_srv() { nsenter --net="/run/netns/$SRV_NS" "$@"; }
in_cli() { nsenter --net="/run/netns/$CLI_NS" "$@"; }
# Thousands of short sessions: let the client reuse TIME_WAIT ports.
in_cli sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="10000 65000"

# The classic host ruleset of an FTPS server behind a firewall, for both
# servers alike; ftpsd adds its own table (priority -10) on start. The
# benchcount table runs after both (priority 100) and only counts the
# attacker's SYNs into each passive range that got that far.
cat >"$WORK/host.nft" <<EOF
table inet host {
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		iif "lo" accept
		tcp dport { $VS_PORT, $FD_PORT, $TLS_PORT } accept
		tcp dport { $VS_RANGE, $FD_RANGE } accept
	}
}
table inet benchcount {
	counter vsftpd_syns { }
	counter ftpsd_syns { }
	chain count {
		type filter hook input priority 100; policy accept;
		ip saddr $ATK_IP tcp dport $VS_RANGE tcp flags & (syn | ack) == syn counter name "vsftpd_syns"
		ip saddr $ATK_IP tcp dport $FD_RANGE tcp flags & (syn | ack) == syn counter name "ftpsd_syns"
	}
}
EOF
in_srv nft -f "$WORK/host.nft"

# ---------------------------------------------------------------- user, files, certificate
log "test user $BUSER, files, certificate, password hashes"
PASS=$(openssl rand -hex 12)
FILES=$WORK/files
mkdir -p "$FILES/dir" "$FILES/site" "$WORK/empty" "$WORK/ftpsd-state"
useradd --system --no-create-home --home-dir "$FILES" --shell /usr/sbin/nologin \
	--comment "ftpsd bench temporary user" "$BUSER"
created_user=1
for i in $(seq 1 20); do printf 'small file %d\n' "$i" >"$FILES/dir/file$i.txt"; done
# The small-file site for the mirror: MIRROR_FILES files of 8 KiB in ten folders.
head -c "$((MIRROR_FILES * 8192))" /dev/urandom | perl -e '
	my ($dir, $n) = @ARGV;
	for my $i (0 .. $n - 1) {
		my $d = sprintf("%s/d%d", $dir, $i % 10);
		mkdir $d;
		read(STDIN, my $buf, 8192) == 8192 or die "short read";
		open(my $f, ">", sprintf("%s/page%04d.html", $d, $i)) or die "$d: $!";
		print $f $buf;
		close($f) or die;
	}' "$FILES/site" "$MIRROR_FILES"
head -c 262144 /dev/urandom >"$FILES/small.bin"
head -c "$((SIZE_MIB * 1048576))" /dev/urandom >"$FILES/big.bin"
sync # its writeback would disturb the timings below
chown -R "$BUSER" "$FILES"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
	-subj /CN=ftpsd-bench -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

"$LOADGEN" hash "${HASH_OPTS[@]}" -password "$PASS" -rounds "$ROUNDS" -sha-out "$WORK/sha512.txt" -bcrypt-out "$WORK/bcrypt.txt" -out "$RESULTS"
usermod -p "$(cat "$WORK/sha512.txt")" "$BUSER"

# vsftpd authenticates system users through PAM: a service with pam_unix
# only (no pam_shells, so the user keeps a nologin shell).
printf 'auth required pam_unix.so\naccount required pam_unix.so\n' >"$PAM_FILE"

# vsftpd "the usual way" for FTPS behind a firewall.
cat >"$WORK/vsftpd.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=$SRV_IP
listen_port=$VS_PORT
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
chroot_local_user=YES
allow_writeable_chroot=YES
secure_chroot_dir=$WORK/empty
pam_service_name=$PAM_SERVICE
max_clients=2000
max_per_ip=1000
ssl_enable=YES
allow_anon_ssl=NO
force_local_logins_ssl=YES
force_local_data_ssl=YES
require_ssl_reuse=NO
ssl_ciphers=HIGH
rsa_cert_file=$WORK/cert.pem
rsa_private_key_file=$WORK/key.pem
pasv_enable=YES
pasv_min_port=${VS_RANGE%-*}
pasv_max_port=${VS_RANGE#*-}
xferlog_enable=YES
vsftpd_log_file=$WORK/vsftpd.log
EOF

cat >"$WORK/ftpsd.toml" <<EOF
[server]
listen = ["$SRV_IP:$FD_PORT"]
max_clients = $((MANY + 1000))
max_clients_per_ip = $((MANY + 1000))

[tls]
cert_file = "$WORK/cert.pem"
key_file = "$WORK/key.pem"

[passive]
ports = "$FD_RANGE"

[firewall]
mode = "nftables"
table = "ftpsd"

[storage]
state_dir = "$WORK/ftpsd-state"

[[user]]
name = "$BUSER"
password_hash = "$(cat "$WORK/bcrypt.txt")"
root = "$FILES"
EOF
"$BIN/ftpsd" check -c "$WORK/ftpsd.toml" >/dev/null
# The same with uploads renamed into place unflushed, for the fsync cost.
sed 's|^state_dir = .*|&\nfsync = "never"|' "$WORK/ftpsd.toml" >"$WORK/ftpsd-nofsync.toml"
"$BIN/ftpsd" check -c "$WORK/ftpsd-nofsync.toml" >/dev/null

# ---------------------------------------------------------------- servers
mkdir -p "$CG/vsftpd" "$CG/ftpsd"
start_server() {
	local name=$1 conf=${2:-$WORK/ftpsd.toml}
	stop_server "$name"
	# The subshell joins the cgroup, then becomes the server: every process
	# the server forks is counted there too.
	case $name in
	vsftpd) (echo "$BASHPID" >"$CG/vsftpd/cgroup.procs" && exec nsenter --net="/run/netns/$SRV_NS" vsftpd "$WORK/vsftpd.conf") \
		>>"$WORK/vsftpd.out" 2>&1 </dev/null & ;;
	ftpsd) (echo "$BASHPID" >"$CG/ftpsd/cgroup.procs" && exec nsenter --net="/run/netns/$SRV_NS" "$BIN/ftpsd" serve -c "$conf") \
		>>"$WORK/ftpsd.log" 2>&1 </dev/null & ;;
	esac
	PID[$name]=$!
	for _ in $(seq 100); do
		if [ -n "$(in_srv ss -Hltn "sport = :${PORT[$name]}")" ]; then return 0; fi
		kill -0 "${PID[$name]}" 2>/dev/null || break
		sleep 0.1
	done
	echo "--- $name output:" >&2
	tail -20 "$WORK/$name".{out,log} >&2 2>/dev/null || true
	die "$name did not start listening on port ${PORT[$name]}"
}
start_server vsftpd
start_server ftpsd

# ---------------------------------------------------------------- what ran where
{
	echo "Machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, kernel $(uname -r), Debian $(cat /etc/debian_version 2>/dev/null || echo '?')"
	echo "vsftpd $(dpkg-query -W -f='${Version}' vsftpd 2>/dev/null || vsftpd -v 2>&1 </dev/null | head -1), $(openssl version | cut -d' ' -f1-2), $(curl --version | head -1 | cut -d' ' -f1-2), nftables $(nft --version | cut -d' ' -f2)"
	echo "ftpsd at commit $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?') $("$BIN/ftpsd" version | sed 's/^ftpsd [^ ]* //'), built with $(go version | cut -d' ' -f3)"
	echo "Settings: $RUNS run(s); files of $SIZE_MIB MiB on $(df -T "$FILES" | awk 'NR==2 {print $2}'); $CLIENTS clients x ${SESSION_SECS}s for session rate; $IDLE idle sessions; $PASV_N PASV samples per run; mirror of $MIRROR_FILES files of 8 KiB ($(lftp --version | head -1 | sed 's/^LFTP | Version \([^ ]*\).*/lftp \1/')); $MANY idle sessions for ftpsd and $MANY_VS for vsftpd, memory again ${MANY_AFTER}s after they close; TLS 1.3 AES-128-GCM, P-256 ECDHE, ECDSA P-256 certificate for both"
	echo "Run at $(date -u '+%Y-%m-%d %H:%M UTC')"
} >"$INFO"
cat "$INFO"
"$LOADGEN" meta -info "$INFO" -out "$RESULTS"

# lg CMD SERVER ARGS...: run loadgen CMD in the client namespace against SERVER.
lg() {
	local cmd=$1 name=$2
	shift 2
	in_cli "$LOADGEN" "$cmd" -server "$name" -cgroup "$CG/$name" -addr "$SRV_IP:${PORT[$name]}" \
		-user "$BUSER" -pass "$PASS" -src "$CLI_IP" -out "$RESULTS" "$@"
}
# fresh_idle SERVER ARGS...: loadgen idle against SERVER freshly started, so
# that its memory starts from a clean server.
fresh_idle() {
	start_server "$1"
	sleep 1
	lg idle "$@"
}
# The order alternates between runs, so neither server always goes first.
order() { if [ $(($1 % 2)) = 1 ]; then echo vsftpd ftpsd; else echo ftpsd vsftpd; fi; }

if [ "$PAUSE" -gt 0 ]; then
	cat >"$WORK/env.sh" <<EOF
SRV_NS=$SRV_NS CLI_NS=$CLI_NS SRV_IP=$SRV_IP CLI_IP=$CLI_IP ATK_IP=$ATK_IP
VS_PORT=$VS_PORT FD_PORT=$FD_PORT VS_RANGE=$VS_RANGE FD_RANGE=$FD_RANGE
BUSER=$BUSER PASS=$PASS WORK=$WORK FILES=$FILES CG=$CG LOADGEN=$LOADGEN
VSFTPD_PID=${PID[vsftpd]} FTPSD_PID=${PID[ftpsd]}
EOF
	log "pausing ${PAUSE}s; set-up described in $WORK/env.sh"
	cat "$WORK/env.sh"
	# In the background, so that a signal ends the pause at once.
	sleep "$PAUSE" &
	SLEEP_PID=$!
	wait "$SLEEP_PID" || true
	SLEEP_PID=""
fi

# ---------------------------------------------------------------- measurements
if want throughput; then
	log "1. single-stream download and upload of $SIZE_MIB MiB (curl)"
	for run in $(seq "$RUNS"); do
		for s in $(order "$run"); do
			lg xfer "$s" -run "$run" -dir down -remote big.bin
		done
		for s in $(order "$run"); do
			lg xfer "$s" -run "$run" -dir up -local "$FILES/big.bin" \
				-remote "up-$s.bin" -check "$FILES/up-$s.bin"
			sync
		done
	done
fi

if want ceiling; then
	log "1b. the bare TLS stream: the $SIZE_MIB MiB file over one TLS connection on the same path (the download ceiling)"
	# exec: $! must be the server itself, so that killing it leaves nothing behind.
	(exec nsenter --net="/run/netns/$SRV_NS" "$LOADGEN" tlsserve -listen "$SRV_IP:$TLS_PORT" \
		-cert "$WORK/cert.pem" -key "$WORK/key.pem" -file "$FILES/big.bin" -for 1h) \
		>>"$WORK/tlsserve.log" 2>&1 </dev/null &
	TLS_PID=$!
	for _ in $(seq 100); do
		[ -n "$(in_srv ss -Hltn "sport = :$TLS_PORT")" ] && break
		sleep 0.1
	done
	for run in $(seq "$RUNS"); do
		in_cli "$LOADGEN" tlsstream -server bare -run "$run" -addr "$SRV_IP:$TLS_PORT" -src "$CLI_IP" \
			-size "$((SIZE_MIB * 1048576))" -out "$RESULTS"
	done
	kill "$TLS_PID" 2>/dev/null
	wait "$TLS_PID" 2>/dev/null || true
	TLS_PID=""
fi

if want sessions; then
	for driver in go curl; do
		log "2. session rate: $CLIENTS $driver clients for ${SESSION_SECS}s (connect, AUTH TLS, login, PBSZ/PROT, PASV, LIST, QUIT)"
		for run in $(seq "$RUNS"); do
			for s in $(order "$run"); do
				lg sessions "$s" -run "$run" -driver "$driver" -c "$CLIENTS" -d "${SESSION_SECS}s"
			done
		done
	done
fi

if want idle; then
	log "3. memory: $IDLE idle logged-in TLS sessions (each server freshly started)"
	for run in $(seq "$RUNS"); do
		for s in $(order "$run"); do
			fresh_idle "$s" -run "$run" -n "$IDLE" -settle "$SETTLE"
		done
	done
fi

if want pasv; then
	log "4. PASV round trip and reply-to-data-connection latency ($PASV_N samples)"
	for run in $(seq "$RUNS"); do
		for s in $(order "$run"); do
			lg pasv "$s" -run "$run" -n "$PASV_N"
		done
	done
fi

if want attack; then
	log "5. firewall under attack: $ATK_IP sweeps the passive range while a PASV reply is pending"
	for run in $(seq "$RUNS"); do
		for s in $(order "$run"); do
			guard=""
			[ "$s" = ftpsd ] && guard="ftpsd guard"
			lg attack "$s" -run "$run" -attacker "$ATK_IP" -range "${RANGE[$s]}" \
				-srv-netns "/run/netns/$SRV_NS" -counter "${s}_syns" -guard "$guard" \
				-remote small.bin -local "$FILES/small.bin" -hold "$HOLD"
		done
	done
fi

if want mirror; then
	log "6. small files: lftp mirror of $MIRROR_FILES files of 8 KiB in ten folders, down with 1 and 4 connections, and up"
	# Nothing is deleted until the section ends: every copy and upload goes to
	# a directory of its own. On an ext4 without a journal (this VM's disk),
	# creating a file steps over every inode freed in the last minute or more
	# (ext4's recently_deleted), so deleting a 1,000-file tree right before an
	# upload made each file of that upload cost both servers more, by how much
	# depending on what the previous step had just deleted.
	MIRROR_TMP=$WORK/mirror
	mkdir -p "$MIRROR_TMP"
	for run in $(seq "$RUNS"); do
		for s in $(order "$run"); do
			for par in 1 4; do
				lg mirror "$s" -run "$run" -dir down -parallel "$par" -remote site -local "$FILES/site" \
					-tmp "$MIRROR_TMP" -cafile "$WORK/cert.pem" -keep
			done
			sync
			lg mirror "$s" -run "$run" -dir up -remote "up-$s-$run" -local "$FILES/site" -check "$FILES/up-$s-$run" \
				-cafile "$WORK/cert.pem" -keep
			sync
		done
		# What the flush before each rename costs: the same upload with fsync = "never".
		start_server ftpsd "$WORK/ftpsd-nofsync.toml"
		lg mirror ftpsd -run "$run" -dir up -test mirror-up-nofsync -remote "up-nofsync-$run" -local "$FILES/site" \
			-check "$FILES/up-nofsync-$run" -cafile "$WORK/cert.pem" -keep
		sync
		start_server ftpsd
		# The upload again, folder by folder, the two servers taking turns
		# (who goes first alternates): the speed of this shared VM drifts
		# over seconds (the same server's CPU per uploaded file varied 2-4x
		# between whole-tree runs of one sitting), and the two uploads of a
		# folder, a second apart, see the same machine.
		pair=0
		for d in "$FILES"/site/*/; do
			d=$(basename "$d")
			pair=$((pair + 1))
			for s in $(order $((run + pair))); do
				lg mirror "$s" -run "$run" -dir up -test mirror-up-pair -pair "$pair" -remote "pair-$s-$run-$d" \
					-local "$FILES/site/$d" -check "$FILES/pair-$s-$run-$d" -cafile "$WORK/cert.pem" -keep
			done
			sync
		done
	done
	rm -rf "$MIRROR_TMP" "$FILES"/up-* "$FILES"/pair-*
	sync
fi

if want many; then
	log "7. many idle TLS sessions: $MANY (ftpsd) and $MANY_VS (vsftpd); memory, open rate, memory ${MANY_AFTER}s after they close"
	for run in $(seq "$RUNS"); do
		for s in $(order "$run"); do
			n=$MANY
			[ "$s" = vsftpd ] && n=$MANY_VS
			fresh_idle "$s" -run "$run" -test idle-many -n "$n" -c 16 -settle "$SETTLE" -after "${MANY_AFTER}s"
		done
	done
fi

# ---------------------------------------------------------------- report
log "results"
note="" judge=()
if [ "$SMOKE" = 1 ]; then
	note="Smoke run: tiny sizes and one run; the figures only show that every step works (speed and memory targets not judged)."
	judge=(-no-judge)
fi
echo
# The attack result is a security property, not a speed: a run where
# ftpsd let the attacker in (or the legitimate transfer fail) exits non-zero.
strict=()
want attack && strict=(-strict)
rc=0
"$LOADGEN" report -in "$RESULTS" -note "$note" ${OUT:+-md "$OUT"} "${judge[@]}" "${strict[@]}" || rc=$?
if [ -n "$OUT" ]; then
	cp "$RESULTS" "${OUT%.md}.jsonl"
	echo
	echo "written: $OUT and ${OUT%.md}.jsonl"
fi
exit "$rc"
