#!/usr/bin/env bash
# Developer and operator entry point, with the verbs Pegasus users know from Pegasus's run.sh.
# The logic lives in the Rust tools; this script only builds them and passes arguments on.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# One build cache per machine, outside the clone: RocksDB (C++) is built once.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pegasus-target}
if command -v ccache >/dev/null 2>&1; then
  export CC=${CC:-"ccache gcc"} CXX=${CXX:-"ccache g++"}
  export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache} CCACHE_BASEDIR=$HOME CCACHE_NOHASHDIR=1
fi

# pypegasus3, the official Python client, is the referee of the wire protocol: a venv with it,
# and its source distribution (which carries its own tests), both cached outside the clone.
PYPEGASUS_VERSION=0.0.1.1
ensure_pypegasus() {
  local venv=${PEGASUS_VENV:-$HOME/.cache/pegasus-venv}
  local src=$HOME/.cache/pypegasus3-$PYPEGASUS_VERSION
  if ! "$venv/bin/python" -c "import pypegasus.pgclient" >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "pypegasus3==$PYPEGASUS_VERSION"
  fi
  if [[ ! -f $src/tests/test_basics.py ]]; then
    local dl
    dl=$(mktemp -d)
    "$venv/bin/pip" download -q --no-binary :all: --no-deps -d "$dl" "pypegasus3==$PYPEGASUS_VERSION"
    tar xzf "$dl/pypegasus3-$PYPEGASUS_VERSION.tar.gz" -C "$(dirname "$src")"
    rm -rf "$dl"
  fi
  export PEGASUS_PYTHON=$venv/bin/python PYPEGASUS_SRC=$src
}

usage() {
  cat <<'USAGE'
Usage: ./run.sh <command> [args]

  start_onebox [-m N] [-r N] [-c] [-a app] [-p partitions] [-w]
                            ZooKeeper (port 22181), N metas (34601…), N replicas (34801…)
                            under ./onebox; -w waits until every partition is healthy
  stop_onebox | clear_onebox | list_onebox
  start_onebox_instance | stop_onebox_instance | restart_onebox_instance  -m i | -r j | -c
  shell [--cluster ip:port,…]   the Pegasus shell (commands on stdin work too)
  bench [pegasus_bench args]    load the onebox's table `temp`
  build                     every binary, release profile
  pack_server               the release tarball pegasus-server-<version>-<sha>-glibc<x>-release.tar.gz
  test                      fmt check, clippy, and every test of the workspace
  configcheck [args]        build and run configcheck (e.g. ./run.sh configcheck config.ini)
  bench_configcheck         configcheck benchmarks (criterion + hyperfine)
  bench_replica             the replica over loopback beside in-process RocksDB
USAGE
}

cmd=${1:-help}
[[ $# -gt 0 ]] && shift
case "$cmd" in
  build)
    cargo build --release -q --workspace --bins --manifest-path "$ROOT/Cargo.toml"
    ;;
  test)
    cd "$ROOT"
    ensure_pypegasus
    cargo fmt --all --check
    cargo clippy --release --workspace --all-targets -- -D warnings
    cargo test --release --workspace "$@"
    cargo build --release -q --workspace --bins
    server/tests/pack.sh
    if command -v nix-instantiate >/dev/null 2>&1; then nix/check.sh; else echo "nix: nix-instantiate not installed, flake checks skipped"; fi
    ;;
  pack_server)
    cargo build --release -q --workspace --bins --manifest-path "$ROOT/Cargo.toml"
    "$ROOT/server/pack_server.sh" "$ROOT"
    ;;
  configcheck)
    cargo build --release -q -p configcheck --manifest-path "$ROOT/Cargo.toml"
    exec "$CARGO_TARGET_DIR/release/configcheck" "$@"
    ;;
  start_onebox|stop_onebox|clear_onebox|list_onebox|start_onebox_instance|stop_onebox_instance|restart_onebox_instance)
    cargo build --release -q -p pegasus-server --manifest-path "$ROOT/Cargo.toml"
    exec "$CARGO_TARGET_DIR/release/pegasus_onebox" --root "$ROOT/onebox" "$cmd" "$@"
    ;;
  shell)
    cargo build --release -q -p pegasus-client --manifest-path "$ROOT/Cargo.toml"
    exec "$CARGO_TARGET_DIR/release/pegasus_shell" "$@"
    ;;
  bench)
    cargo build --release -q -p pegasus-client --manifest-path "$ROOT/Cargo.toml"
    exec "$CARGO_TARGET_DIR/release/pegasus_bench" "$@"
    ;;
  bench_replica)
    cd "$ROOT"
    cargo bench -p pegasus-server --bench loopback -- "$@"
    ;;
  bench_configcheck)
    cd "$ROOT"
    cargo bench -p configcheck --bench check
    configcheck/benches/process.sh
    ;;
  help|-h|--help) usage ;;
  *) echo "run.sh: unknown command \`$cmd\`" >&2; usage >&2; exit 2 ;;
esac
