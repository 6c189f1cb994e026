#!/usr/bin/env bash
# Developer and operator entry point, with the verbs Pegasus users know from Pegasus's run.sh.
# The logic lives in the Rust tools; this script installs what the build needs, builds them and
# passes arguments on. `.ci/run` runs `./run.sh test`, so CI installs through the same set-up.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# One build cache per machine, outside the clone: RocksDB (C++) is built once.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pegasus-target}

# System packages, the one list (Debian names), by what needs them.
declare -A WHY=(
  [libclang-dev]="bindgen generates RocksDB's Rust bindings with it"
  [g++]="RocksDB is C++"
  [ccache]="RocksDB's C++ is compiled once per machine, not once per checkout"
  [zookeeper]="the onebox runs a real ZooKeeper"
  [default-jre-headless]="ZooKeeper runs on Java"
  [python3-venv]="the tests run pypegasus3, the official Python client, from a venv"
  [docker.io]="the tests run the compose cluster on a Docker engine of their own"
  [thrift-compiler]="the admin IDL test generates code from Pegasus's IDL with it"
  [docker-compose]="the tests run docker-compose.yml"
  [debootstrap]="the compose test builds its base image, and the deploy test its hosts' tree, without a registry"
  [systemd-container]="the deploy test boots its hosts with systemd-nspawn (systemd as PID 1, sshd)"
  [openssh-client]="pegasus_cluster and its test reach hosts with the system's ssh"
  [nix-bin]="the tests parse and evaluate the Nix flake"
  [prometheus]="the tests check every role's /metrics with promtool"
  [chromium]="the tests load the status page in a real (headless) browser"
  [iproute2]="the network test builds three hosts in network namespaces (ip netns)"
  [iptables]="the network test cuts links between those hosts"
  [hyperfine]="the benchmarks time whole processes with it"
  [redis-server]="the onebox benchmark runs beside Redis"
  [etcd-server]="the onebox benchmark runs beside a 3-member etcd cluster"
  [etcd-client]="the onebox benchmark checks the etcd cluster is up with etcdctl"
  [linux-perf]="the replica profile (tests/benches/profile_replica.sh) records with perf"
)
PACKAGES_build=(libclang-dev g++ ccache)
PACKAGES_onebox=(zookeeper default-jre-headless)
PACKAGES_test=(python3-venv thrift-compiler docker.io docker-compose debootstrap systemd-container openssh-client nix-bin prometheus chromium iproute2 iptables)
PACKAGES_bench=(hyperfine redis-server etcd-server etcd-client linux-perf)
# Other systems: what to look for there (Fedora names), and the alternative.
OTHER_SYSTEMS="clang-devel gcc-c++ ccache java-17-openjdk-headless zookeeper python3 (Fedora),
  llvm ccache openjdk zookeeper python (Homebrew); or \`nix develop\`, which has them all"

# known_groups GROUP…: stops with status 2 at a group that does not exist.
known_groups() {
  local group
  for group in "$@"; do
    if ! declare -p "PACKAGES_$group" >/dev/null 2>&1; then
      echo "run.sh: no package group \`$group\` (groups: build, onebox, test, bench)" >&2
      exit 2
    fi
  done
}

# missing_packages GROUP…: the packages of those groups that dpkg does not have installed
# (PEGASUS_DPKG_ADMINDIR points dpkg at another package database: the tests' fake one).
missing_packages() {
  local group p
  local -a admin=()
  [[ -n ${PEGASUS_DPKG_ADMINDIR:-} ]] && admin=(--admindir="$PEGASUS_DPKG_ADMINDIR")
  for group in "$@"; do
    local -n list="PACKAGES_$group"
    for p in "${list[@]}"; do
      # The onebox takes ZooKeeper from $ZOOKEEPER_HOME when set.
      [[ $p == zookeeper && -n ${ZOOKEEPER_HOME:-} ]] && continue
      dpkg-query "${admin[@]}" -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
  done | awk '!seen[$0]++'
}

# ensure_packages GROUP…: installs what is missing (as root, or with `sudo -n`), saying what and
# why; otherwise stops with status 2 and the command to run, before anything is compiled.
ensure_packages() {
  known_groups "$@"
  [[ ${PEGASUS_SKIP_SETUP:-} == 1 ]] && return 0
  if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    [[ -f $CARGO_TARGET_DIR/.setup-checked ]] && return 0
    echo "run.sh: this system has no apt-get, so run.sh cannot install what the build needs." >&2
    echo "  Debian names: ${PACKAGES_build[*]} ${PACKAGES_onebox[*]} ${PACKAGES_test[*]} ${PACKAGES_bench[*]}" >&2
    echo "  Elsewhere: $OTHER_SYSTEMS" >&2
    echo "  Once they are installed: touch $CARGO_TARGET_DIR/.setup-checked (or set PEGASUS_SKIP_SETUP=1)" >&2
    exit 2
  fi
  local -a missing
  mapfile -t missing < <(missing_packages "$@")
  [[ ${#missing[@]} -eq 0 ]] && return 0
  local p apt=${PEGASUS_APT_GET:-apt-get}
  local -a sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      echo "run.sh: missing system packages:" >&2
      for p in "${missing[@]}"; do echo "  $p: ${WHY[$p]}" >&2; done
      echo "install them as root, then run this again:" >&2
      echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
      echo "(or use \`nix develop\`, which has them all)" >&2
      exit 2
    fi
  fi
  for p in "${missing[@]}"; do echo "run.sh: installing $p (${WHY[$p]})" >&2; done
  # apt's own chatter only when it fails.
  local log
  log=$(mktemp)
  if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive "$apt" update -q &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive "$apt" install -y -q "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "run.sh: installing ${missing[*]} failed (above)" >&2
    exit 2
  fi
  rm -f "$log"
}

# The compilers go through ccache (set after the set-up, which may have just installed it).
use_ccache() {
  if command -v ccache >/dev/null 2>&1; then
    export CC=${CC:-"ccache gcc"} CXX=${CXX:-"ccache g++"}
    export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache} CCACHE_BASEDIR=$HOME CCACHE_NOHASHDIR=1
  fi
}

# cargo_build ARGS…: `cargo build --release`, quiet once RocksDB is built; the first build of
# the server (the only crate on RocksDB) says so and shows cargo's progress (20 silent minutes
# look like a hang).
cargo_build() {
  local rocksdb=
  [[ " $* " == *" --workspace "* || " $* " == *" pegasus-server "* ]] && rocksdb=1
  if [[ -z $rocksdb ]] || compgen -G "$CARGO_TARGET_DIR/release/build/librocksdb-sys-*/out/librocksdb.a" >/dev/null; then
    cargo build --release -q --manifest-path "$ROOT/Cargo.toml" "$@"
  else
    echo "run.sh: first build: compiling RocksDB (C++) once, about 20 minutes on 2 cores; cached in $CARGO_TARGET_DIR" >&2
    cargo build --release --manifest-path "$ROOT/Cargo.toml" "$@"
  fi
}

# setup GROUP…: what each verb needs; `./run.sh setup GROUP…` alone runs it (CI does).
setup() {
  ensure_packages "$@"
  use_ccache
}

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

# Every process the tests start carries `PEGASUS_TEST_RUN=<mark>` in its environment (children
# inherit it, detached ones too); one still running once the tests are done outlived its test,
# and holds its ports and memory into every later run. Lists them, kills them, and fails.
no_leftovers() {
  local mark=$1 env left=()
  for env in /proc/[0-9]*/environ; do
    if grep -qxz "PEGASUS_TEST_RUN=$mark" "$env" 2>/dev/null; then left+=("${env//[^0-9]/}"); fi
  done
  [[ ${#left[@]} -eq 0 ]] && return 0
  echo "processes started by the tests outlived them (killed now):" >&2
  ps -o pid=,etime=,args= -p "$(IFS=,; echo "${left[*]}")" >&2 || true
  kill -KILL "${left[@]}" 2>/dev/null || true
  return 1
}

usage() {
  cat <<'USAGE'
Usage: ./run.sh <command> [args]

  start_onebox [-m N] [-r N] [-c] [-a app] [-p partitions] [-w] [--no_fsync] [--set s.k=v]
                            ZooKeeper (port 22181), N metas (34601…), N replicas (34801…)
                            under ./onebox; -w waits until every partition is healthy
  stop_onebox | clear_onebox | list_onebox
  start_onebox_instance | stop_onebox_instance | restart_onebox_instance  -m i | -r j | -c
  shell [--cluster ip:port,…]   the Pegasus shell (commands on stdin work too)
  bench [pegasus_bench args]    load the onebox's table `temp`
  setup [--check] [build|onebox|test|bench]…
                            install the system packages those need (every verb does this
                            first); --check only lists what is missing
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
  setup)
    check=
    [[ ${1:-} == --check ]] && { check=1; shift; }
    [[ $# -gt 0 ]] || set -- build onebox test bench
    known_groups "$@"
    if [[ -n $check ]]; then
      # Lists what is missing, one package a line; status 1 if anything is.
      missing=$(missing_packages "$@")
      [[ -z $missing ]] || { echo "$missing"; exit 1; }
    else
      setup "$@"
    fi
    ;;
  build)
    setup build
    cargo_build --workspace --bins
    ;;
  test)
    setup build onebox test
    cd "$ROOT"
    ensure_pypegasus
    cargo fmt --all --check
    cargo_build --workspace --bins
    cargo clippy --release --workspace --all-targets -- -D warnings
    # Snapshots are found from this checkout, not from the one whose build the cache holds
    # (checkouts that share a target folder share unchanged test binaries).
    mark="$$-$(date +%s%N)"
    # A failing test's leftovers go too (the run fails already).
    trap 'no_leftovers "$mark" || true' EXIT
    if [[ $# -eq 0 ]]; then
      PEGASUS_TEST_RUN=$mark INSTA_WORKSPACE_ROOT="$ROOT" cargo test --release --workspace -- --skip deploy::
      # The deploy tool's tests time write stalls of under a second: alone on the machine.
      PEGASUS_TEST_RUN=$mark cargo test --release -p pegasus-tests --test e2e -- deploy:: --test-threads 1
    else
      PEGASUS_TEST_RUN=$mark INSTA_WORKSPACE_ROOT="$ROOT" cargo test --release --workspace "$@"
    fi
    PEGASUS_TEST_RUN=$mark tests/pack.sh
    PEGASUS_TEST_RUN=$mark tests/readme.py
    no_leftovers "$mark"
    if command -v nix-instantiate >/dev/null 2>&1; then nix/check.sh; else echo "nix: nix-instantiate not installed, flake checks skipped"; fi
    ;;
  pack_server)
    setup build
    cargo_build --workspace --bins
    "$ROOT/server/pack_server.sh" "$ROOT"
    ;;
  configcheck)
    setup build
    cargo_build -p configcheck
    exec "$CARGO_TARGET_DIR/release/configcheck" "$@"
    ;;
  start_onebox|stop_onebox|clear_onebox|list_onebox|start_onebox_instance|stop_onebox_instance|restart_onebox_instance)
    setup build onebox
    cargo_build -p pegasus-server -p pegasus-tools --bins
    # Pegasus's onebox ports lie in the kernel's range for outgoing connections: where we may,
    # keep the kernel from lending them to a client (one held makes a node's start fail).
    if [[ -w /proc/sys/net/ipv4/ip_local_reserved_ports ]]; then
      echo "22181,34101,34601-34609,34801-34809" >/proc/sys/net/ipv4/ip_local_reserved_ports 2>/dev/null || true
    fi
    exec "$CARGO_TARGET_DIR/release/pegasus_onebox" --root "$ROOT/onebox" "$cmd" "$@"
    ;;
  shell)
    setup build
    cargo_build -p pegasus-tools --bin pegasus_shell
    exec "$CARGO_TARGET_DIR/release/pegasus_shell" "$@"
    ;;
  bench)
    setup build
    cargo_build -p pegasus-tools --bin pegasus_bench
    exec "$CARGO_TARGET_DIR/release/pegasus_bench" "$@"
    ;;
  bench_replica)
    setup build bench
    cd "$ROOT"
    cargo bench -p pegasus-tests --bench loopback -- "$@"
    ;;
  bench_configcheck)
    setup build bench
    cd "$ROOT"
    cargo bench -p configcheck --bench check
    configcheck/benches/process.sh
    ;;
  help|-h|--help) usage ;;
  *) echo "run.sh: unknown command \`$cmd\`" >&2; usage >&2; exit 2 ;;
esac
