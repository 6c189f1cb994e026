#!/usr/bin/env bash
# What Prometheus scraping costs the cluster, on the onebox (1 meta, 3 replica servers, 3 copies),
# in one run:
#   1. the servers' CPU per scrape: every meta's and replica server's /metrics fetched `n` times
#      back to back, the servers' CPU time (from /proc) divided by the scrapes, and so the share of
#      one core a 1 s scrape interval takes;
#   2. readrandom and fillrandom under pegasus_bench, without and with a 1 s scrape of every
#      server (`pegasus_bench --scrape`), `rounds` times in ABBA order (a run right after another
#      is not like the first: the order alternates so that this cancels); the ratio of the medians.
#
#   tests/benches/scrape_cost.sh [rounds] [threads] [num]
set -euo pipefail
rounds=${1:-10}
threads=${2:-16}
num=${3:-30000}
source "$(dirname "$0")/onebox_bench.sh"
./run.sh start_onebox -m 1 -r 3 -w >/dev/null
trap './run.sh stop_onebox >/dev/null; ./run.sh clear_onebox >/dev/null' EXIT
servers=(127.0.0.1:34601 127.0.0.1:34801 127.0.0.1:34802 127.0.0.1:34803)
server_ticks() { process_ticks onebox/meta1/pid onebox/replica*/pid; }
# One fill first, so that reads find every key (and the stores have something to report).
"$bin/pegasus_bench" --threads "$threads" --num "$num" --benchmarks fillrandom >/dev/null

n=200
bytes=0
for s in "${servers[@]}"; do bytes=$((bytes + $(curl -s "http://$s/metrics" | wc -c))); done
sleep 5
i0=$(server_ticks); sleep 10; i1=$(server_ticks)
idle=$(echo "scale=4; ($i1 - $i0) / 10" | bc)
t0=$(server_ticks); start=$(date +%s.%N)
for ((i = 0; i < n; i++)); do
  for s in "${servers[@]}"; do curl -s -o /dev/null "http://$s/metrics"; done
done
t1=$(server_ticks); took=$(echo "$(date +%s.%N) - $start" | bc)
per=$(echo "scale=3; (($t1 - $t0) - $idle * $took) * 1000 / $hz / $n" | bc)
echo "scrape: $n rounds of ${#servers[@]} servers ($bytes bytes of metrics a round): $per ms of server CPU a round, so a 1 s interval takes $(echo "scale=2; $per / 10" | bc) % of one core"

declare -A runs
for ((i = 1; i <= rounds; i++)); do
  order=(without with)
  (( i % 2 == 0 )) && order=(with without)
  for mode in "${order[@]}"; do
    flags=()
    [[ $mode == with ]] && flags=(--scrape "$(IFS=,; echo "${servers[*]}")" --scrape-interval-ms 1000)
    out=$("$bin/pegasus_bench" --threads "$threads" --num "$num" --benchmarks readrandom,fillrandom "${flags[@]}")
    for w in readrandom fillrandom; do
      ops=$(awk -v w="$w" '$1 == w {print $2}' <<<"$out")
      runs[$w,$mode]+="$ops "
    done
    echo "round $i, $mode scraping: $(awk '$1 == "readrandom" || $1 == "fillrandom" {printf "%s %s ops/s  ", $1, $2}' <<<"$out")$(grep -o 'scraped.*' <<<"$out" || true)"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
(( rounds > 0 )) || exit 0
for w in readrandom fillrandom; do
  without=$(median <<<"${runs[$w,without]}")
  with=$(median <<<"${runs[$w,with]}")
  echo "$w: median $without ops/s without scraping, $with with: ratio $(echo "scale=4; $with / $without" | bc)"
done
