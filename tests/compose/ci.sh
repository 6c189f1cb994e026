#!/usr/bin/env bash
# Starts a Docker engine of our own (no engine runs by default here; no iptables, no default
# bridge, vfs storage, its own data, socket and pid file), runs tests/compose/test.sh against it, and
# stops it. Called by .ci/run.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${PEGASUS_DOCKER_DIR:-$HOME/.cache/pegasus-docker}
mkdir -p "$dir/data" "$dir/exec"
export DOCKER_HOST=unix://$dir/docker.sock
dockerd --iptables=false --bridge=none --storage-driver=vfs --data-root "$dir/data" \
  --exec-root "$dir/exec" --host "$DOCKER_HOST" --pidfile "$dir/docker.pid" > "$dir/dockerd.log" 2>&1 &
stop() { kill "$(cat "$dir/docker.pid" 2>/dev/null)" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT
for _ in $(seq 1 60); do
  docker version >/dev/null 2>&1 && break
  sleep 0.5
done
docker version >/dev/null
# The compose config is the production template rendered with docker/cluster.vars, and the
# backups' block service (docker/config.backup.ini) appended.
rendered=$(mktemp)
"${CARGO_TARGET_DIR:-$HOME/.cache/pegasus-target}/release/configcheck" render --offline \
  "$root/configcheck/tests/fixtures/reference/pegasus-config.ini" --vars "$root/docker/cluster.vars" -o "$rendered" >/dev/null 2>&1
cat "$root/docker/config.backup.ini" >>"$rendered"
cmp -s "$rendered" "$root/docker/config.ini" || { echo "docker/config.ini is stale: re-render it" >&2; exit 1; }
rm -f "$rendered"
"$root/tests/compose/test.sh"
