#!/usr/bin/env bash
# Brute-force benchmark for ftpsd: the attacker's password attempt rate
# before and after its ban, and a legitimate user's login latency during the
# attack against the same latency with no attack. See bench/README.md.
#
# It creates (and removes again, also on failure or Ctrl-C) one network
# namespace with four addresses on its loopback (198.18.0.0/24, part of the
# block RFC 2544 sets aside for benchmarks), a work directory, and one ftpsd
# process. The host's own network and nftables ruleset are never touched.
#
# usage: sudo bench/brute.sh [--seconds N] [--conns N] [--firewall nftables|off] [--out FILE] [--smoke]
set -euo pipefail

usage() {
	cat <<'EOF'
usage: bench/brute.sh [options]        (as root)

  --seconds N        length of each phase (default 15)
  --conns N          parallel attacker connections (default 20, ftpsd's default max_clients_per_ip)
  --firewall MODE    ftpsd's [firewall] mode: nftables (default) or off
  --out FILE         write the markdown table here (default bench/brute-results.md; with --smoke, nowhere)
  --smoke            3-second phases, writes nothing
EOF
}

SECS=15 CONNS=20 FIREWALL=nftables OUT="" OUT_SET=0 SMOKE=0
while [ $# -gt 0 ]; do
	case $1 in
	--seconds) SECS=$2; shift 2 ;;
	--conns) CONNS=$2; shift 2 ;;
	--firewall) FIREWALL=$2; shift 2 ;;
	--out) OUT=$2; OUT_SET=1; shift 2 ;;
	--smoke) SMOKE=1; SECS=3; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "brute.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done
for n in "$SECS" "$CONNS"; do
	case $n in '' | *[!0-9]*) echo "brute.sh: not a number: $n" >&2; exit 2 ;; esac
done
[ "$SECS" -ge 1 ] && [ "$SECS" -le 300 ] || { echo "brute.sh: --seconds must be 1..300" >&2; exit 2; }
[ "$CONNS" -ge 1 ] && [ "$CONNS" -le 200 ] || { echo "brute.sh: --conns must be 1..200" >&2; exit 2; }
case $FIREWALL in nftables | off) ;; *) echo "brute.sh: --firewall must be nftables or off" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "brute.sh: must run as root (network namespace, nftables)" >&2; exit 1; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "$OUT_SET" = 0 ] && [ "$SMOKE" = 0 ]; then OUT=$ROOT/bench/brute-results.md; fi
ID=$$
NS=ftpsdbrute-$ID
WORK=$(mktemp -d "/tmp/ftpsd-brute-$ID.XXXXXX")
SRV=198.18.0.1 LEGIT=198.18.0.2 ATK_ALLOWED=198.18.0.3 ATK=198.18.0.4
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

echo "=== building ftpsd and loadgen"
(cd "$ROOT" && go build -o "$WORK/ftpsd" ./cmd/ftpsd && go build -o "$WORK/loadgen" ./bench/loadgen)

netns_up $SRV $LEGIT $ATK_ALLOWED $ATK

# A real password and bcrypt at its default cost (10), as `ftpsd passwd` makes it.
PASS=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
HASH=$(printf '%s\n' "$PASS" | "$WORK/ftpsd" passwd)
mkdir -p "$WORK/files" "$WORK/state"
cat >"$WORK/ftpsd.toml" <<EOF
[server]
listen = ["$SRV:2121"]

[passive]
ports = "50000-50099"

[firewall]
mode = "$FIREWALL"

[storage]
state_dir = "$WORK/state"

# The defaults (5 failures in 10m ban for 1h), plus one allow-listed attacker
# address: it is neither tarpitted nor banned, so its phase shows what the
# fair bcrypt gate alone does for other users during an unthrottled attack.
[ban]
allow = ["$ATK_ALLOWED"]

[[user]]
name = "bench"
password_hash = "$HASH"
root = "$WORK/files"
EOF
serve_ftpsd $SRV

RES=$WORK/brute.jsonl
lg() { ip netns exec "$NS" "$WORK/loadgen" brute -server ftpsd -out "$RES" -addr "$SRV:2121" -user bench -pass "$PASS" -src "$LEGIT" -d "${SECS}s" "$@"; }
echo "=== idle: legitimate logins alone"
lg -c 0 -phase "idle (no attack)"
echo "=== attack from an allow-listed address: no tarpit, no ban, only the fair bcrypt gate"
lg -c "$CONNS" -attacker "$ATK_ALLOWED" -phase "attack, allow-listed attacker (gate only)"
echo "=== attack from an ordinary address: tarpit, then ban"
lg -c "$CONNS" -attacker "$ATK" -phase "attack, tarpit then ban (defaults)"

echo "=== ftpsd's ban line"
grep 'msg=ban' "$WORK/ftpsd.log" || { echo "brute.sh: no ban was logged" >&2; exit 1; }
{
	echo "Run $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, ftpsd at $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'), firewall $FIREWALL, $SECS s per phase, $CONNS attacker connections, bcrypt cost 10."
	echo
	"$WORK/loadgen" brute-report -in "$RES"
	echo
	echo 'ftpsd log: `'"$(grep 'msg=ban' "$WORK/ftpsd.log" | head -1)"'`'
} >"$WORK/table.md"
cat "$WORK/table.md"
if [ -n "$OUT" ]; then cp "$WORK/table.md" "$OUT"; echo "wrote $OUT"; fi
