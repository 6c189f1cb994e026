#!/usr/bin/env bash
# Cold backup and restore of a table of SIZE MiB on disk (default 1024) to the onebox's
# `local_service`, beside `cp -r` of the same checkpoint files on the same disk (the floor: the
# bytes a backup must move, moved by the kernel's copy), in one run; and the write throughput a
# running backup costs (the same fill with and without backups meanwhile).
#
# The onebox runs 1 meta and 3 replica servers; values are 4 KiB and RocksDB compression is off,
# so the table's files are SIZE MiB (per copy). The timed backup and restore are unbounded
# (`cold_backup_rate_mb_per_sec = 0`); page caches are dropped before each timed copy, so each
# reads from the disk. The write phases run at two upload bounds (below); FILL_NUM writes each.
#
#   tests/benches/backup_vs_cp.sh [size_mib]
set -euo pipefail
size_mib=${1:-1024}
source "$(dirname "$0")/onebox_bench.sh"
metas=127.0.0.1:34601
value=4096
num=$((size_mib * 1024 * 1024 / value))
shell() { "$bin/pegasus_shell" --cluster "$metas"; }
now() { date +%s.%N; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
fill() { "$bin/pegasus_bench" --metas "$metas" --benchmarks fillrandom --num "$1" --value-size "$value" --threads 16 2>&1; }

./run.sh start_onebox -m 1 -r 3 -w \
  --set replication.cold_backup_rate_mb_per_sec=0 \
  --set pegasus.server.rocksdb_compression_type=none >/dev/null
trap './run.sh stop_onebox >/dev/null 2>&1 || true' EXIT
app_id=$(echo "app temp -j" | shell | sed -n '/^{/,$p' | python3 -c 'import json,sys; print(json.load(sys.stdin)["general"]["app_id"])')
echo "== fill: $num writes of $value B (${size_mib} MiB)"
fill "$num" | grep -E "fillrandom" || true

# backup_until_done [poll_s]: starts a backup of the table; prints its id once it is complete,
# asking every poll_s (default 0.05; each ask is a shell process, which costs CPU the write
# phases measure, so they ask every 0.5 s).
backup_until_done() {
  local poll=${1:-0.05}
  local id status
  id=$(echo "start_backup_app $app_id local_service" | shell | sed -n 's/.*backup_id \([0-9]*\).*/\1/p')
  [[ -n $id ]] || { echo "no backup started" >&2; exit 1; }
  while :; do
    status=$(echo "query_backup_status $app_id $id" | shell | awk -v id="$id" '$1 == id {print $8}')
    case $status in
      complete) echo "$id"; return ;;
      failed) echo "backup $id failed" >&2; exit 1 ;;
    esac
    sleep "$poll"
  done
}

drop_caches
t0=$(now)
id=$(backup_until_done)
t1=$(now)
dir=onebox/backup/onebox/$id/temp_$app_id
bytes=$(python3 -c "import json; print(json.load(open('$dir/backup_info'))['size'])")
backup_s=$(echo "$t1 - $t0" | bc -l)

# The floor: the same checkpoint files copied by cp -r on the same disk, then synced (as the
# backup syncs every file).
floor_src=onebox/bench-floor-src
floor_dst=onebox/bench-floor-dst
rm -rf "$floor_src" "$floor_dst"
cp -r "$dir" "$floor_src"
drop_caches
t0=$(now)
cp -r "$floor_src" "$floor_dst"
sync
t1=$(now)
cp_s=$(echo "$t1 - $t0" | bc -l)
# And the floor of a restore here: its three copies (one per replica server, all on this one
# disk) copied at once.
drop_caches
t0=$(now)
for i in 1 2 3; do cp -r "$floor_src" "$floor_dst.$i" & done
wait
sync
t1=$(now)
cp3_s=$(echo "$t1 - $t0" | bc -l)
rm -rf "$floor_src" "$floor_dst" "$floor_dst".*

# Restore: until every partition serves (each of the 3 members downloads its copy).
drop_caches
t0=$(now)
out=$(echo "restore_app -c onebox -a temp -i $app_id -t $id -b local_service -n temp_restored" | shell)
new_id=$(echo "$out" | sed -n 's/.*(app_id \([0-9]*\)).*/\1/p')
[[ -n $new_id ]] || { echo "restore refused: $out" >&2; exit 1; }
until echo "query_restore_status $new_id" | shell | grep -q ": done,"; do sleep 0.05; done
t1=$(now)
restore_s=$(echo "$t1 - $t0" | bc -l)

# Writes with and without backups running, at the default bound (200 MB/s a node) and at one
# that fits three nodes on one disk (25 MB/s a node: 75 MB/s of a disk that copies ~480). Each
# rate runs plain, during, plain, during (the table grows as it goes; alternating keeps that
# out of the comparison); backups run one after another through each "during" phase.
fill_num=${FILL_NUM:-20000}
ops() { fill "$fill_num" | awk '/fillrandom/ {for (i = 1; i <= NF; i++) if ($i ~ /ops\/s|QPS/) print $(i-1)}' | head -1; }
declare -A loss_line
for rate in 200 25; do
  ./run.sh stop_onebox >/dev/null
  ./run.sh start_onebox -m 1 -r 3 -w --set pegasus.server.rocksdb_compression_type=none \
    --set replication.cold_backup_rate_mb_per_sec=$rate >/dev/null
  plain=() during=() backups=()
  for round in 1 2; do
    echo "== $rate MB/s a node, round $round: writes without a backup"
    plain+=("$(ops)")
    echo "== $rate MB/s a node, round $round: writes while backups run"
    (
      # Each one removed once complete: the disk holds one at a time.
      while [[ ! -e onebox/bench-stop ]]; do
        t0=$(now)
        done_id=$(backup_until_done 0.5) || true
        if [[ -n ${done_id:-} ]]; then
          b=$(python3 -c "import json; print(json.load(open('onebox/backup/onebox/$done_id/temp_$app_id/backup_info'))['size'])")
          echo "$b $(echo "$(now) - $t0" | bc -l)" >>onebox/bench-backups
          rm -rf "onebox/backup/onebox/$done_id"
        fi
      done
    ) &
    looper=$!
    during+=("$(ops)")
    touch onebox/bench-stop
    wait "$looper" || true
    rm -f onebox/bench-stop
  done
  rate_seen=$(awk '{b += $1; s += $2} END {if (s) printf "%.0f", b / s / 1048576; else print "?"}' onebox/bench-backups 2>/dev/null || echo "?")
  rm -f onebox/bench-backups
  loss_line[$rate]=$(python3 -c "
p = [float(x) for x in '${plain[*]}'.split()]; d = [float(x) for x in '${during[*]}'.split()]
print('%-22s %8.0f %8.0f %8.0f %%   %s' % ('$rate MB/s a node', sum(p) / len(p), sum(d) / len(d), 100 * (1 - sum(d) / sum(p)), '$rate_seen'))")
done

mib=$(echo "$bytes / 1048576" | bc -l)
printf '\n%-34s %10s %10s %10s\n' "" "seconds" "MiB/s" "vs cp -r"
printf '%-34s %10.2f %10.0f %10s\n' "cp -r + sync (the floor)" "$cp_s" "$(echo "$mib / $cp_s" | bc -l)" "1.00x"
printf '%-34s %10.2f %10.0f %9.2fx\n' "backup (to complete)" "$backup_s" "$(echo "$mib / $backup_s" | bc -l)" "$(echo "$cp_s / $backup_s" | bc -l)"
printf '%-34s %10.2f %10.0f %9.2fx\n' "restore (to every partition served)" "$restore_s" "$(echo "$mib / $restore_s" | bc -l)" "$(echo "$cp_s / $restore_s" | bc -l)"
printf '%-34s %10.2f %10s %9.2fx  (the bound of a 3-copy restore on one disk: %.2fx of cp -r)\n' "3 x cp -r at once + sync" "$cp3_s" "" "$(echo "$cp3_s / $restore_s" | bc -l)" "$(echo "$cp_s / $cp3_s" | bc -l)"
echo "  ($(printf '%.0f' "$mib") MiB in the backup; a restore writes it once per copy: 3 copies; the last column of the 3 x cp -r row is restore against it)"
printf '\nwrites (4 KiB, 3 copies, 16 callers; mean of 2 rounds each)\n%-22s %8s %8s %10s   %s\n' "upload bound" "plain" "during" "lost" "backup MiB/s meanwhile"
for rate in 200 25; do echo "${loss_line[$rate]}"; done
