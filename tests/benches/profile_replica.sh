#!/usr/bin/env bash
# A profile of one replica server under 3-copy fsynced writes: the onebox with three replica
# servers, `pegasus_bench` writing with 16 callers, and `perf record -g` on replica 1 for 20 s;
# prints the top entries (self time) and the kernel's share of the samples.
#
#   tests/benches/profile_replica.sh [seconds]     (needs `perf`: Debian's linux-perf)
set -euo pipefail
seconds=${1:-20}
source "$(dirname "$0")/onebox_bench.sh"
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 2; }
./run.sh start_onebox -m 1 -r 3 -w >/dev/null
trap './run.sh stop_onebox >/dev/null; ./run.sh clear_onebox >/dev/null' EXIT
"$bin/pegasus_bench" --threads 16 --num 10000000 --benchmarks fillrandom >/dev/null 2>&1 &
load=$!
sleep 5
data=$(mktemp)
perf record -F 499 -g -p "$(cat onebox/replica1/pid)" -o "$data" -- sleep "$seconds" 2>/dev/null
kill "$load" 2>/dev/null || true
wait "$load" 2>/dev/null || true
report=$(perf report -i "$data" --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' || true)
# Self time, the top 15 (perf's trailing columns dropped).
awk 'NR <= 15 {while ($NF == "-") NF--; print}' <<<"$report"
awk '{v = $1; sub("%", "", v); if ($2 == "[k]") k += v; else u += v} END {printf "kernel %.1f %%, user space %.1f %%\n", k, u}' <<<"$report"
rm -f "$data"
