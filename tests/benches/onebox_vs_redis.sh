#!/usr/bin/env bash
# The onebox under pegasus_bench beside Redis under redis-benchmark, with the same value size,
# concurrency and request count, in one run:
#   - onebox writes and reads with 1 copy (one replica server) and with 3 copies (three, PacificA),
#     each with the plog fsynced per batch and with `plog_force_flush = false`;
#   - Redis with `appendfsync always` and with `everysec`;
#   - a 3-member etcd cluster on loopback (fsync per write, as etcd always does), under
#     `pegasus_bench --etcd` (the same workloads, callers and values over etcd's gRPC KV API);
# plus the onebox's cold start to all-healthy, what a write costs the replica servers in CPU
# (per write, and per copy) and in plog fsyncs, what it costs etcd's members in CPU, how busy the
# machine was meanwhile, the ratios the replication issue asks about, and the most 3-copy /
# 1-copy can be when every process shares this machine's CPUs.
#
#   tests/benches/onebox_vs_redis.sh [threads] [num]   (`./run.sh setup bench` installs Redis, etcd)
set -euo pipefail
threads=${1:-16}
num=${2:-100000}
source "$(dirname "$0")/onebox_bench.sh"
declare -A ops cpu_us other_us p99_us

# CPU time (clock ticks) the onebox's replica servers used so far.
replica_ticks() { process_ticks onebox/replica*/pid; }
# Log fsyncs (private logs' and the shared log's) of the onebox's replica servers so far (their
# /metrics, on the port of `[apps.replica] ports`).
replica_fsyncs() {
  local total=0 port n
  for port in $(awk '/^\[apps.replica\]/ {r = 1} r && /ports =/ {print $3; r = 0}' onebox/replica*/config.ini); do
    n=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^pegasus_(plog|slog)_fsync_latency_seconds_count/ {n += $2} END {print n + 0}')
    total=$((total + ${n:-0}))
  done
  echo "$total"
}
# Context switches (voluntary and not) of the onebox's replica servers' threads so far: each is a
# thread put to sleep or woken, which a write pays for on every hop between threads.
replica_switches() {
  local f
  for f in onebox/replica*/pid; do
    cat /proc/"$(cat "$f")"/task/*/status 2>/dev/null
  done | awk '/ctxt_switches:/ {n += $2} END {print n + 0}'
}
# The machine's busy and total clock ticks so far (every CPU).
machine_ticks() { awk '/^cpu / {busy = $2 + $3 + $4 + $7 + $8; all = 0; for (i = 2; i <= NF; i++) all += $i; print busy, all; exit}' /proc/stat; }

# onebox COPIES FSYNC [private]: fills then reads `temp`, keeps the ops/s (with `private`, each
# partition's private log fsyncs on its own, without the node's shared log: the peer of the
# shared log, same binary, same run).
onebox() {
  local copies=$1 fsync=$2 key="$1,$2" flags=() start end out r0 r1 b0 t0 b1 t1 cpu f0 f1 s0 s1 what=
  [[ $fsync == no ]] && flags=(--no_fsync)
  if [[ ${3:-} == private ]]; then
    flags+=(--no_shared_log)
    key+=",private"
    what=", private logs only"
  fi
  start=$(date +%s.%N)
  ./run.sh start_onebox -m 1 -r "$copies" -w "${flags[@]}" >/dev/null
  end=$(date +%s.%N)
  echo "== onebox, $copies cop$([[ $copies == 1 ]] && echo y || echo ies), fsync $fsync$what (cold start to healthy $(echo "$end - $start" | bc) s)"
  r0=$(replica_ticks)
  f0=$(replica_fsyncs)
  s0=$(replica_switches)
  read -r b0 t0 < <(machine_ticks)
  out=$("$bin/pegasus_bench" --threads "$threads" --num "$num" --value-size 100 --benchmarks fillrandom)
  r1=$(replica_ticks)
  f1=$(replica_fsyncs)
  s1=$(replica_switches)
  read -r b1 t1 < <(machine_ticks)
  cpu=$(echo "scale=1; ($r1 - $r0) * 1000000 / $hz / $num" | bc)
  out+=$'\n'"replica servers' CPU per write: $cpu us, $(echo "scale=1; $cpu / $copies" | bc) us per copy; machine busy $(echo "scale=0; 100 * ($b1 - $b0) / ($t1 - $t0)" | bc) % during the writes"
  out+=$'\n'"log fsyncs per write: $(echo "scale=2; ($f1 - $f0) / $num" | bc), $(echo "scale=2; ($f1 - $f0) / $num / $copies" | bc) per copy"
  out+=$'\n'"replica servers' context switches per write: $(echo "scale=1; ($s1 - $s0) / $num" | bc), $(echo "scale=1; ($s1 - $s0) / $num / $copies" | bc) per copy"
  out+=$'\n'$("$bin/pegasus_bench" --threads "$threads" --num "$num" --value-size 100 --benchmarks readrandom)
  ops[write,$key]=$(awk '/^fillrandom / {print $2}' <<<"$out")
  if [[ $copies == 3 && $fsync == yes ]]; then
    # Open loop at half the peak just measured, 10 s of it: latency from when each write was due.
    local half=$((${ops[write,$key]} / 2))
    out+=$'\n'$("$bin/pegasus_bench" --rate "$half" --num $((half * 10)) --value-size 100 --benchmarks fillrandom)
    p99_us[$key]=$(awk '/^fillrandom@/ {print $11}' <<<"$out")
  fi
  echo "$out"
  ops[read,$key]=$(awk '/^readrandom / {print $2}' <<<"$out")
  cpu_us[$key]=$cpu
  # Everything else the machine did per write: the client, the meta, ZooKeeper, the kernel's
  # threads.
  other_us[$key]=$(echo "scale=1; (($b1 - $b0) - ($r1 - $r0)) * 1000000 / $hz / $num" | bc)
  ./run.sh stop_onebox >/dev/null
  ./run.sh clear_onebox >/dev/null
}
for copies in 1 3; do
  for fsync in yes no; do
    onebox "$copies" "$fsync"
  done
done
onebox 3 yes private

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
etcd_pids=()
etcd_dir=$(mktemp -d)
stop_etcd() {
  if ((${#etcd_pids[@]})); then
    kill "${etcd_pids[@]}" 2>/dev/null || true
    wait "${etcd_pids[@]}" 2>/dev/null || true
  fi
  etcd_pids=()
  rm -rf "$etcd_dir"
}
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; stop_etcd' EXIT
redis always
redis everysec

# etcd: three members on loopback, each with a client and a peer port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
declare -a client_ports peer_ports
for i in 1 2 3; do client_ports[i]=$(free_port); peer_ports[i]=$(free_port); done
members=$(for i in 1 2 3; do printf 'e%s=http://127.0.0.1:%s,' "$i" "${peer_ports[i]}"; done)
for i in 1 2 3; do
  etcd --name "e$i" --data-dir "$etcd_dir/e$i" --log-level error \
    --listen-peer-urls "http://127.0.0.1:${peer_ports[i]}" --initial-advertise-peer-urls "http://127.0.0.1:${peer_ports[i]}" \
    --listen-client-urls "http://127.0.0.1:${client_ports[i]}" --advertise-client-urls "http://127.0.0.1:${client_ports[i]}" \
    --initial-cluster "${members%,}" --initial-cluster-state new >"$etcd_dir/e$i.log" 2>&1 &
  etcd_pids+=($!)
done
etcd_ok=
for _ in $(seq 1 100); do
  if ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:${client_ports[1]}" put bench-ready 1 >/dev/null 2>&1; then etcd_ok=1; break; fi
  sleep 0.2
done
[[ -n $etcd_ok ]] || { echo "etcd did not start: see $etcd_dir" >&2; exit 1; }
echo "== etcd, 3 members on loopback (fsync per write): pegasus_bench --etcd, $threads callers, $num requests, 100 B values"
e0=$(pid_ticks "${etcd_pids[@]}")
out=$("$bin/pegasus_bench" --etcd "127.0.0.1:${client_ports[1]}" --threads "$threads" --num "$num" --value-size 100 --benchmarks fillrandom)
e1=$(pid_ticks "${etcd_pids[@]}")
out+=$'\n'"etcd members' CPU per write: $(echo "scale=1; ($e1 - $e0) * 1000000 / $hz / $num" | bc) us"
out+=$'\n'$("$bin/pegasus_bench" --etcd "127.0.0.1:${client_ports[1]}" --threads "$threads" --num "$num" --value-size 100 --benchmarks readrandom)
echo "$out"
ops[write,etcd]=$(awk '/^fillrandom/ {print $2}' <<<"$out")
ops[read,etcd]=$(awk '/^readrandom/ {print $2}' <<<"$out")
stop_etcd

# Two decimals, rounded (bc alone truncates: 0.1998 would print .19).
ratio() { LC_ALL=C printf '%.2f' "$(echo "scale=4; $1 / $2" | bc)"; }
# Redis as three copies: a primary and two replicas, `appendfsync always` on each, every SET
# followed by `WAIT 2 0` (acknowledged once both replicas have it), each caller on a connection
# of its own.
redis_ports=()
redis_dirs=()
stop_redis_group() {
  local p
  for p in "${redis_ports[@]}"; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
  rm -rf "${redis_dirs[@]}"
  redis_ports=()
  redis_dirs=()
}
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; stop_etcd; stop_redis_group' EXIT
for i in 0 1 2; do
  redis_ports[i]=$(free_port)
  redis_dirs[i]=$(mktemp -d)
  replica=()
  ((i > 0)) && replica=(--replicaof 127.0.0.1 "${redis_ports[0]}")
  redis-server --port "${redis_ports[i]}" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always \
    --dir "${redis_dirs[i]}" --daemonize yes "${replica[@]}" >/dev/null
done
for _ in $(seq 1 100); do
  [[ $(redis-cli -p "${redis_ports[0]}" info replication 2>/dev/null | grep -c 'state=online') == 2 ]] && break
  sleep 0.2
done
echo "== Redis primary + 2 replicas, appendfsync always on each, WAIT 2 0 after each SET: pegasus_bench --redis-wait, $threads callers, $num requests, 100 B values"
out=$("$bin/pegasus_bench" --redis-wait "127.0.0.1:${redis_ports[0]}" --threads "$threads" --num "$num" --value-size 100 --benchmarks fillrandom,readrandom)
echo "$out"
ops[write,redis3]=$(awk '/^fillrandom/ {print $2}' <<<"$out")
ops[read,redis3]=$(awk '/^readrandom/ {print $2}' <<<"$out")
stop_redis_group

echo "== ratios ($threads callers, 100 B values)"
echo "3-copy / 1-copy writes, fsync:            $(ratio "${ops[write,3,yes]}" "${ops[write,1,yes]}")"
echo "3-copy / 1-copy writes, no fsync:         $(ratio "${ops[write,3,no]}" "${ops[write,1,no]}")"
echo "3-copy fsynced writes, shared log / private logs only: $(ratio "${ops[write,3,yes]}" "${ops[write,3,yes,private]}")"
echo "3-copy fsynced writes / Redis always:     $(ratio "${ops[write,3,yes]}" "${ops[set,redis,always]}")"
echo "3-copy fsynced writes / etcd (3 members):  $(ratio "${ops[write,3,yes]}" "${ops[write,etcd]}")"
echo "3-copy fsynced writes / Redis + 2 replicas (WAIT 2): $(ratio "${ops[write,3,yes]}" "${ops[write,redis3]}")"
echo "3-copy fsynced write p99, open loop at half the peak: ${p99_us[3,yes]} us shared log, ${p99_us[3,yes,private]} us private logs only"
echo "3-copy reads / etcd reads:                 $(ratio "${ops[read,3,yes]}" "${ops[read,etcd]}")"
echo "3-copy reads / Redis GET (everysec):      $(ratio "${ops[read,3,yes]}" "${ops[get,redis,everysec]}")"
echo "replica CPU per write, 3 copies / 1 copy:  $(ratio "${cpu_us[3,yes]}" "${cpu_us[1,yes]}") fsync, $(ratio "${cpu_us[3,no]}" "${cpu_us[1,no]}") no fsync"
# On one machine three copies do three copies' work on the same CPUs: even if each copy cost no
# more than a single copy does alone, and the rest (client, meta, kernel) no more per write,
# 3-copy / 1-copy could not pass (rest + one copy) / (rest + three copies).
bound() { ratio "(${other_us[1,$1]} + ${cpu_us[1,$1]})" "(${other_us[1,$1]} + 3 * ${cpu_us[1,$1]})"; }
echo "3-copy / 1-copy at most, on one machine:   $(bound yes) fsync, $(bound no) no fsync (the rest ${other_us[1,yes]} and ${other_us[1,no]} us per write)"
