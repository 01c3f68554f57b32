#!/usr/bin/env bash
# Firewall figures of ftpsd alone (no vsftpd): pinhole open/close latency
# with and without the table watcher, and how long the passive range goes
# without its table after something else deletes or flushes it. Runs the
# nft package's Go benchmarks in a network namespace of their own; needs root.
#   sudo bench/nft.sh            # 20,000 pinholes per case, 600 disruptions; ~1 min
# The Benchmark lines are also written to bench/results-nft.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
	echo "bench/nft.sh: needs root (network namespaces, nftables)" >&2
	exit 1
fi
out=bench/results-nft.txt
{
	echo "# $(date -u +%F) $(nproc) cores, $(uname -r); go test -bench in ./nft (see bench/nft.sh)"
	go test -run '^$' -count 2 -benchtime 20000x \
		-bench 'BenchmarkOpenClose$|BenchmarkOpenCloseUnwatched$|BenchmarkOpenClose10k$' ./nft/
	go test -run '^$' -count 2 -benchtime 600x -bench 'BenchmarkRestore$' ./nft/
} | grep -E '^(#|Benchmark)' | tee "$out"
