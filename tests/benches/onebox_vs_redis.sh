#!/usr/bin/env bash
# The onebox (ZooKeeper, 3 metas, 3 replicas, table `temp`) under pegasus_bench, beside Redis
# under redis-benchmark with the same value size, concurrency and request count, in one run;
# plus the onebox's cold start to all-healthy.
#
#   tests/benches/onebox_vs_redis.sh [threads] [num]      (needs redis-server, redis-benchmark)
set -euo pipefail
threads=${1:-16}
num=${2:-100000}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
./run.sh clear_onebox >/dev/null 2>&1 || true
./run.sh build
bin=${CARGO_TARGET_DIR:-$HOME/.cache/pegasus-target}/release

start=$(date +%s.%N)
./run.sh start_onebox -w >/dev/null
end=$(date +%s.%N)
echo "onebox cold start to all partitions healthy: $(echo "$end - $start" | bc) s"

echo "== pegasus_bench: $threads callers, $num ops, 100 B values, against the onebox"
"$bin/pegasus_bench" --threads "$threads" --num "$num" --value-size 100 --benchmarks fillrandom,readrandom
./run.sh clear_onebox >/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec --dir "$(mktemp -d)" --daemonize yes >/dev/null
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true' EXIT
sleep 0.5
echo "== redis-benchmark: $threads clients, $num requests, 100 B values (AOF, fsync every second)"
for t in set get; do
  # The summary block: "throughput summary: N requests per second", then avg/min/p50/p95/p99/max.
  redis-benchmark -p "$port" -t "$t" -n "$num" -c "$threads" -d 100 -r 1000000 --precision 3 2>/dev/null |
    awk -v t="$t" '/throughput summary/ {tp=$3} /latency summary/ {getline; getline; print t ": " tp " ops/s, avg " $1 " ms, p50 " $3 " ms, p99 " $5 " ms"}'
done
