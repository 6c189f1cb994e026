# Sourced by the onebox benchmarks: the repository root as working dir, no onebox left from
# before, the release binaries built (`$bin`), and the CPU time of the onebox's processes.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
./run.sh stop_onebox >/dev/null 2>&1 || true
./run.sh clear_onebox >/dev/null 2>&1 || true
./run.sh build
bin=${CARGO_TARGET_DIR:-$HOME/.cache/pegasus-target}/release
hz=$(getconf CLK_TCK)

# CPU time (user + system, clock ticks of `$hz`) the processes of these pid files used so far.
process_ticks() {
  local total=0 f stat
  for f in "$@"; do
    read -r -a stat <"/proc/$(cat "$f")/stat"
    total=$((total + stat[13] + stat[14]))
  done
  echo "$total"
}
