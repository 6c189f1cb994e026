#!/usr/bin/env bash
# A replica server with thousands of partition copies (`COPIES`, default 3000): one meta, one
# replica server, a table of that many partitions with one copy each. Prints the replica
# server's threads, resident memory, open files and CPU idle with the bootstrap tables only (5
# copies) and with the big table, the time until every copy is primary after the create, and
# after a restart of the replica server (its start-up: every RocksDB opened, every log replayed),
# and the time a restarted meta takes to load every partition's configuration from ZooKeeper.
#
#   tests/benches/scale.sh            (or COPIES=1000 tests/benches/scale.sh)
set -euo pipefail
source "$(dirname "$0")/onebox_bench.sh"
copies=${COPIES:-3000}
meta=127.0.0.1:34601
replica=127.0.0.1:34801

status() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
report() {
  local pid=$1 what=$2
  printf '%-44s threads %4s  RSS %5s MiB  open files %5s\n' "$what" "$(status "$pid" Threads)" \
    "$(($(status "$pid" VmRSS) / 1024))" "$(ls "/proc/$pid/fd" | wc -l)"
}
# The share of one core a process (pid file) uses over 10 s.
idle_cpu() {
  local before after
  before=$(process_ticks "$1")
  sleep 10
  after=$(process_ticks "$1")
  echo "$(((after - before) * 100 / (10 * hz))) % of a core"
}
# Primaries the replica server reports (its /metrics).
primaries() {
  curl -s "http://$replica/metrics" |
    awk '/^pegasus_replicas\{/ && /replica_role="primary"/ {print int($NF)}' | head -1
}
wait_primaries() {
  local want=$1 started=$2
  while [[ $(primaries || echo 0) -lt $want ]]; do
    sleep 0.2
    if (($(date +%s) - ${started%.*} > 900)); then echo "not serving after 900 s" >&2; exit 1; fi
  done
  echo "$(date +%s.%N) - $started" | bc
}

# About 7 open files per copy (RocksDB's log, manifest, WAL, lock, tables, folder; the plog):
# the servers raise their soft bound to the hard one, which is raised here where the machine
# allows it (on the CI machine it does not: 20,000, about 2,850 copies).
ulimit -Hn 65536 2>/dev/null || true
ulimit -Sn "$(ulimit -Hn)"
"$bin/pegasus_onebox" start_onebox -m 1 -r 1 -p 1 -w >/dev/null
sleep 3
report "$(cat onebox/replica1/pid)" "replica server, 5 copies, idle:"
echo "replica server, 5 copies, idle: $(idle_cpu onebox/replica1/pid)"
report "$(cat onebox/meta1/pid)" "meta server, 5 copies, idle:"
base=$(primaries)

started=$(date +%s.%N)
echo "create big -p $copies -r 1" | "$bin/pegasus_shell" --cluster "$meta" >/dev/null
took=$(wait_primaries $((base + copies)) "$started")
echo "create of $copies copies: every one primary after ${took} s"
sleep 5
report "$(cat onebox/replica1/pid)" "replica server, $((base + copies)) copies, idle:"
echo "replica server, $((base + copies)) copies, idle: $(idle_cpu onebox/replica1/pid)"
report "$(cat onebox/meta1/pid)" "meta server, $((base + copies)) copies, idle:"

"$bin/pegasus_onebox" stop_onebox_instance -r 1 >/dev/null
started=$(date +%s.%N)
"$bin/pegasus_onebox" start_onebox_instance -r 1 >/dev/null
took=$(wait_primaries $((base + copies)) "$started")
echo "restart with $((base + copies)) copies: every one primary again after ${took} s"
report "$(cat onebox/replica1/pid)" "replica server after the restart:"

# A meta taking over reads every partition's configuration from ZooKeeper (pipelined reads).
loads() { cat onebox/meta1/data/log/meta.log.* 2>/dev/null | grep -a "loaded the cluster's state from ZooKeeper" || true; }
before=$(loads | wc -l)
"$bin/pegasus_onebox" restart_onebox_instance -m 1 >/dev/null
for _ in $(seq 600); do
  (($(loads | wc -l) > before)) && break
  sleep 0.1
done
echo "meta restart: state of $((base + copies)) partitions loaded from ZooKeeper in $(loads | tail -1 | sed -n 's/.* ms=\([0-9]*\).*/\1/p') ms"
./run.sh stop_onebox >/dev/null
