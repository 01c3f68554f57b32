#!/usr/bin/env bash
# testssl.sh's verdict on ftpsd's TLS: explicit FTPS (STARTTLS ftp) on 2121
# and implicit FTPS on 990, with ftpsd's self-signed test certificate.
#
# It creates (and removes again) one network namespace holding ftpsd on
# 198.18.0.1 (RFC 2544 benchmark space) and a work directory. Needs root and
# Debian's testssl.sh package (`testssl`). Writes bench/testssl-results.md:
# every finding of severity LOW or above, and whether any is not about the
# certificate (the test certificate is self-signed, so those are expected).
#
# usage: sudo bench/testssl.sh [--out FILE]
set -euo pipefail

OUT=""
case ${1:-} in
--out) OUT=$2 ;;
-h | --help) sed -n '2,12p' "$0"; exit 0 ;;
"") ;;
*) echo "testssl.sh: unknown option $1" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "testssl.sh: must run as root" >&2; exit 1; }
command -v testssl >/dev/null || { echo "testssl.sh: install Debian's testssl.sh package (apt-get install testssl.sh)" >&2; exit 1; }
command -v jq >/dev/null || { echo "testssl.sh: needs jq" >&2; exit 1; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/bench/testssl-results.md}
ID=$$ NS=ftpsdtls-$ID SRV=198.18.0.1
WORK=$(mktemp -d "/tmp/ftpsd-testssl-$ID.XXXXXX")
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

(cd "$ROOT" && go build -o "$WORK/ftpsd" ./cmd/ftpsd)
netns_up $SRV
HASH=$(head -c 18 /dev/urandom | base64 | "$WORK/ftpsd" passwd)
mkdir -p "$WORK/files"
cat >"$WORK/ftpsd.toml" <<EOF
[server]
listen = ["$SRV:2121"]
implicit_listen = ["$SRV:990"]
[passive]
ports = "50000-50099"
[storage]
state_dir = "$WORK/state"
[[user]]
name = "u"
password_hash = "$HASH"
root = "$WORK/files"
EOF
serve_ftpsd $SRV

{
	echo "# testssl.sh against ftpsd"
	echo
	echo "Run $(date -u +%Y-%m-%dT%H:%MZ), testssl.sh $(dpkg-query -W -f '${Version}' testssl.sh 2>/dev/null || echo '?'), ftpsd at $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'), self-signed ECDSA P-256 test certificate."
} >"$WORK/report.md"
verdict=0
for target in "explicit:-t ftp $SRV:2121" "implicit:$SRV:990"; do
	name=${target%%:*} args=${target#*:}
	echo "=== testssl $args"
	# shellcheck disable=SC2086 # args is a word list on purpose
	ip netns exec "$NS" testssl --quiet --color 0 --warnings off --jsonfile "$WORK/$name.json" $args >"$WORK/$name.txt" 2>&1 || true
	# Findings of severity LOW and above; those about the certificate are expected here.
	jq -r '.[] | select(.severity == "LOW" or .severity == "MEDIUM" or .severity == "HIGH" or .severity == "CRITICAL") | "\(.severity)\t\(.id)\t\(.finding)"' "$WORK/$name.json" >"$WORK/$name.findings"
	grep -v -E $'\t(cert|chain_of_trust|OCSP|CRL|DNS_CAArecord|certificate_transparency|intermediate_cert|cert_)' "$WORK/$name.findings" >"$WORK/$name.notcert" || true
	# Known and explained in the report: crypto/tls's fixed ticket lifetime hint.
	grep -v -E $'\tTLS_session_ticket\t' "$WORK/$name.notcert" >"$WORK/$name.other" || true
	{
		echo
		echo "## $name FTPS ($args)"
		echo
		echo "Cipher suites and protocols offered (testssl's own lines):"
		echo
		echo '```'
		grep -E '^ (SSLv2|SSLv3|TLS 1(\.[0-3])?|NULL|Anonymous|Export|LOW|Triple|Obsolete|Strong|Forward)|LUCKY13|BEAST|session ticket|Session Resumption' "$WORK/$name.txt" | sed 's/[[:space:]]*$//'
		echo '```'
		echo
		echo "Findings of severity LOW or above:"
		echo
		echo '```'
		cat "$WORK/$name.findings"
		echo '```'
		echo
		if [ -s "$WORK/$name.other" ]; then
			echo "**Verdict: flagged beyond the certificate:** $(cut -f2 "$WORK/$name.other" | tr '\n' ' ')"
		elif grep -q $'\tTLS_session_ticket\t' "$WORK/$name.notcert"; then
			echo "**Verdict:** nothing flagged except the test certificate and the session ticket lifetime *hint* (see the note below)."
		else
			echo "**Verdict:** nothing flagged except the test certificate."
		fi
	} >>"$WORK/report.md"
	[ -s "$WORK/$name.other" ] && verdict=1
done
cat >>"$WORK/report.md" <<'NOTE'

## Note: the session ticket lifetime hint

testssl reads the lifetime *hint* in the server's NewSessionTicket message:
604800 s (7 days). Go's crypto/tls writes that value into every TLS 1.3
ticket (`maxSessionTicketLifetime`, not configurable; changing it would need
a `tls.Config` field upstream). What ftpsd actually accepts is shorter: it
seals tickets itself (`WrapSession`/`UnwrapSession`) with keys rotated every
12 hours and refuses any ticket issued more than 24 hours ago (unit test
`TestTicketsExpireAndRotate` in `server/`). A client that offers an older
ticket just gets a full handshake (on a data connection that must resume,
a refusal).
NOTE
cp "$WORK/report.md" "$OUT"
cat "$OUT"
exit $verdict
