# Sourced by the onebox benchmarks: the repository root as working dir, no onebox left from
# before, the release binaries built (`$bin`), and the CPU time of the onebox's processes.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
./run.sh stop_onebox >/dev/null 2>&1 || true
./run.sh clear_onebox >/dev/null 2>&1 || true
./run.sh build
bin=${CARGO_TARGET_DIR:-$HOME/.cache/pegasus-target}/release
hz=$(getconf CLK_TCK)

# CPU time (user + system, clock ticks of `$hz`) these processes used so far.
pid_ticks() {
  local total=0 pid stat
  for pid in "$@"; do
    read -r -a stat <"/proc/$pid/stat"
    total=$((total + stat[13] + stat[14]))
  done
  echo "$total"
}
# The same for the processes of these pid files.
process_ticks() {
  local f pids=()
  for f in "$@"; do pids+=("$(cat "$f")"); done
  pid_ticks "${pids[@]}"
}
