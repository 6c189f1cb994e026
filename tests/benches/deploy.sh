#!/usr/bin/env bash
# The deploy tool's figures, one run each, on the five-host bed (tests/e2e/deploy.rs): `deploy` +
# `start` to every table fully healthy (8 instances on 5 hosts, the bed's boot excluded and
# printed apart), and a rolling restart of all 8 instances under writers and readers beside a
# naive `systemctl restart` of a replica server holding primaries (the longest write stall of
# one writer in each, and the history's verdict). Needs root; `./run.sh test` sets the rest up.
#
#   tests/benches/deploy.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pegasus-target}
export PEGASUS_PYTHON=${PEGASUS_PYTHON:-${PEGASUS_VENV:-$HOME/.cache/pegasus-venv}/bin/python}
command -v ccache >/dev/null && export CC=${CC:-"ccache gcc"} CXX=${CXX:-"ccache g++"} \
  CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache} CCACHE_BASEDIR=$HOME CCACHE_NOHASHDIR=1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! cargo test --release -q --manifest-path "$root/Cargo.toml" -p pegasus-tests --test e2e -- \
    deploy:: --test-threads 1 --nocapture >"$log" 2>&1; then
  tail -50 "$log" >&2
  exit 1
fi
grep -E "^(bed:|deploy \+ start|history:|longest write stall)" "$log"
