# shellcheck shell=bash
# Sourced by brute.sh and testssl.sh: one network namespace $NS holding
# ftpsd, run from the work directory $WORK, and a cleanup (on exit, also on
# failure or Ctrl-C) that stops ftpsd and removes the namespace and $WORK.
# The caller sets NS and WORK before sourcing it.

FTPSD_PID=""
cleanup() {
	if [ -n "$FTPSD_PID" ]; then kill "$FTPSD_PID" 2>/dev/null || true; wait "$FTPSD_PID" 2>/dev/null || true; fi
	ip netns delete "$NS" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# netns_up ADDR...: create $NS with its loopback up and ADDR/32 on it.
netns_up() {
	local a
	ip netns add "$NS"
	ip -n "$NS" link set lo up
	for a in "$@"; do ip -n "$NS" addr add "$a/32" dev lo; done
}

# serve_ftpsd HOST: start $WORK/ftpsd with $WORK/ftpsd.toml in $NS (log in
# $WORK/ftpsd.log) and wait up to 10 s for it to listen on HOST:2121.
serve_ftpsd() {
	ip netns exec "$NS" "$WORK/ftpsd" serve -c "$WORK/ftpsd.toml" >"$WORK/ftpsd.log" 2>&1 &
	FTPSD_PID=$!
	for _ in $(seq 100); do
		ip netns exec "$NS" bash -c "exec 3<>/dev/tcp/$1/2121" 2>/dev/null && break
		sleep 0.1
	done
}
