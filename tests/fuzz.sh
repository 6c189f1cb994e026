#!/usr/bin/env bash
# The fuzz targets (the protocol's frame and Thrift decoders, configcheck's parser), each for a
# fixed time: libFuzzer with AddressSanitizer where a nightly toolchain is installed (cargo-fuzz
# is installed from crates.io when missing); elsewhere the proptests over the same functions,
# with many cases. A crash found is copied to `<crate>/fuzz/regressions/<target>/` (committed,
# it is replayed by `cargo test` from then on) and fails the run.
#
#   PEGASUS_FUZZ_SECONDS  per target (default 60)
#   PEGASUS_FUZZ_CASES    per proptest, without nightly (default 200000)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${PEGASUS_FUZZ_SECONDS:-60}
targets=("protocol frames" "protocol thrift" "configcheck parse")

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: no nightly toolchain; the proptests over the same decoders instead"
  PEGASUS_FUZZ_CASES=${PEGASUS_FUZZ_CASES:-200000} \
    cargo test --release -p pegasus-protocol --test frames --test fuzz_regressions
  exit 0
fi
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
# Their own build cache: nightly and sanitizer flags never touch the workspace's (RocksDB's).
export CARGO_TARGET_DIR=${PEGASUS_FUZZ_TARGET_DIR:-$HOME/.cache/pegasus-fuzz-target}
corpora=${PEGASUS_FUZZ_CORPUS:-$HOME/.cache/pegasus-fuzz-corpus}
for t in "${targets[@]}"; do
  read -r crate target <<<"$t"
  corpus=$corpora/$crate-$target
  kept=$crate/fuzz/regressions/$target
  artifacts=$crate/fuzz/artifacts/$target
  log=$(mktemp)
  mkdir -p "$corpus"
  rm -rf "$artifacts"
  seeds=()
  [[ -d $kept ]] && seeds+=("$PWD/$kept")
  echo "fuzz: $crate $target for ${seconds}s"
  if (cd "$crate" && cargo +nightly fuzz run --release "$target" "$corpus" "${seeds[@]}" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1) >"$log" 2>&1; then
    grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" || true
  else
    tail -60 "$log" >&2
    mkdir -p "$kept"
    cp "$artifacts"/* "$kept"/ 2>/dev/null || true
    echo "fuzz: $crate $target failed; the input is kept in $kept: commit it" >&2
    exit 1
  fi
  rm -f "$log"
done
