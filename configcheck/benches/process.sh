#!/usr/bin/env bash
# Process-level cost of `configcheck check`, measured with hyperfine, beside Python's
# configparser reading the same files (what a hand-written checker script would start from).
#
#   configcheck/benches/process.sh        (needs hyperfine and python3)
#
# 1. the production template, one process, host facts collected live;
# 2. a folder of 1,000 per-node configs (cluster mode, offline).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
"$root/run.sh" build
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pegasus-target}
bin=$CARGO_TARGET_DIR/release/configcheck
fixtures=$here/../tests/fixtures
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for i in $(seq -w 1 1000); do cp "$fixtures/good/config.ini" "$work/node$i.ini"; done
cat > "$work/read_all.py" <<'PY'
import configparser, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.ini")):
    parser = configparser.ConfigParser(strict=False, interpolation=None, inline_comment_prefixes=(";", "#"), allow_no_value=True)
    parser.read(path)
PY
hyperfine --warmup 3 -N --ignore-failure \
  --command-name "configcheck check (production template, live facts)" "$bin check $fixtures/reference/pegasus-config.ini" \
  --command-name "configcheck check --offline (production template)" "$bin check --offline $fixtures/reference/pegasus-config.ini"
hyperfine --warmup 1 \
  --command-name "configcheck check: 1,000-node folder" "$bin check --offline -q $work" \
  --command-name "python configparser: read the same 1,000 files" "python3 $work/read_all.py $work"
