#!/usr/bin/env bash
# The onebox under pegasus_bench beside Redis under redis-benchmark, with the same value size,
# concurrency and request count, in one run:
#   - onebox writes and reads with 1 copy (one replica server) and with 3 copies (three, PacificA),
#     each with the plog fsynced per batch and with `plog_force_flush = false`;
#   - Redis with `appendfsync always` and with `everysec`;
# plus the onebox's cold start to all-healthy, and the ratios the replication issue asks about.
#
#   tests/benches/onebox_vs_redis.sh [threads] [num]      (needs redis-server, redis-benchmark)
set -euo pipefail
threads=${1:-16}
num=${2:-100000}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
./run.sh stop_onebox >/dev/null 2>&1 || true
./run.sh clear_onebox >/dev/null 2>&1 || true
./run.sh build
bin=${CARGO_TARGET_DIR:-$HOME/.cache/pegasus-target}/release
declare -A ops

# onebox COPIES FSYNC: fills then reads `temp`, keeps the ops/s.
onebox() {
  local copies=$1 fsync=$2 flags=() start end out
  [[ $fsync == no ]] && flags=(--no_fsync)
  start=$(date +%s.%N)
  ./run.sh start_onebox -m 1 -r "$copies" -w "${flags[@]}" >/dev/null
  end=$(date +%s.%N)
  echo "== onebox, $copies cop$([[ $copies == 1 ]] && echo y || echo ies), fsync $fsync (cold start to healthy $(echo "$end - $start" | bc) s)"
  out=$("$bin/pegasus_bench" --threads "$threads" --num "$num" --value-size 100 --benchmarks fillrandom,readrandom)
  echo "$out"
  ops[write,$copies,$fsync]=$(awk '/^fillrandom/ {print $2}' <<<"$out")
  ops[read,$copies,$fsync]=$(awk '/^readrandom/ {print $2}' <<<"$out")
  ./run.sh stop_onebox >/dev/null
  ./run.sh clear_onebox >/dev/null
}
for copies in 1 3; do
  for fsync in yes no; do
    onebox "$copies" "$fsync"
  done
done

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis() {
  local mode=$1 dir
  dir=$(mktemp -d)
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync "$mode" --dir "$dir" --daemonize yes >/dev/null
  sleep 0.5
  echo "== redis-benchmark: $threads clients, $num requests, 100 B values (AOF, appendfsync $mode)"
  for t in set get; do
    # The summary block: "throughput summary: N requests per second", then avg/min/p50/p95/p99/max.
    line=$(redis-benchmark -p "$port" -t "$t" -n "$num" -c "$threads" -d 100 -r 1000000 --precision 3 2>/dev/null |
      awk -v t="$t" '/throughput summary/ {tp=$3} /latency summary/ {getline; getline; print t ": " tp " ops/s, avg " $1 " ms, p50 " $3 " ms, p99 " $5 " ms"}')
    echo "$line"
    ops[$t,redis,$mode]=$(awk '{print $2}' <<<"$line")
  done
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true' EXIT
redis always
redis everysec

ratio() { echo "scale=2; $1 / $2" | bc; }
echo "== ratios ($threads callers, 100 B values)"
echo "3-copy / 1-copy writes, fsync:            $(ratio "${ops[write,3,yes]}" "${ops[write,1,yes]}")"
echo "3-copy / 1-copy writes, no fsync:         $(ratio "${ops[write,3,no]}" "${ops[write,1,no]}")"
echo "3-copy fsynced writes / Redis always:     $(ratio "${ops[write,3,yes]}" "${ops[set,redis,always]}")"
echo "3-copy reads / Redis GET (everysec):      $(ratio "${ops[read,3,yes]}" "${ops[get,redis,everysec]}")"
