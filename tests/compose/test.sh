#!/usr/bin/env bash
# The compose cluster, for real, on a machine without a registry: a base image from
# `debootstrap bookworm` (with Debian's zookeeper and a JRE), then the root docker-compose.yml
# with docker/docker-compose.ci.yml, which builds the ZooKeeper image and ours on that base (ours
# from `./run.sh pack_server`, unpacked) when they are missing, as a user's `docker compose up`
# builds from source; then
# every healthcheck waited for, pypegasus3 set/get against the metas, a replica restarted, the
# data checked, the replica holding a primary killed during a write loop (nothing acknowledged
# lost, fully healthy again), a table backed up to the shared volume and restored, Prometheus (the monitoring profile) scraping every role with every
# expression of the Grafana dashboard returning data, and `down -v`. Needs DOCKER_HOST (a dockerd of our own), debootstrap,
# docker-compose and PEGASUS_PYTHON.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
: "${DOCKER_HOST:?set DOCKER_HOST to a running dockerd}"
compose=(docker-compose -p pegasusci -f docker-compose.yml -f docker/docker-compose.ci.yml --profile monitoring)
# Debian's docker CLI has no buildx: CI builds the prebuilt image with the legacy builder.
unset DOCKER_BUILDKIT COMPOSE_DOCKER_CLI_BUILD
metas=172.28.0.11:34601,172.28.0.12:34601,172.28.0.13:34601

# The base has what every image of the cluster needs: ZooKeeper and a JRE, and Prometheus for
# the monitoring profile (a base made before that is made again).
if ! docker run --rm --network none --entrypoint /bin/sh pegasus-base:bookworm -c 'test -x /usr/bin/prometheus' >/dev/null 2>&1; then
  rootfs=${PEGASUS_ROOTFS:-$HOME/.cache/pegasus-rootfs}
  if [[ ! -x $rootfs/usr/bin/java || ! -x $rootfs/usr/bin/prometheus ]]; then
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=zookeeper,default-jre-headless,netcat-openbsd,ca-certificates,prometheus bookworm "$rootfs" >/dev/null
  fi
  docker rmi -f pegasus-base:bookworm >/dev/null 2>&1 || true
  tar -C "$rootfs" -c . | docker import - pegasus-base:bookworm >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tarball=$("$root/server/pack_server.sh" "$work")
tar xzf "$tarball" -C "$work"
export PEGASUS_PREBUILT="$work/$(cat "$work/PACKAGE")" PEGASUS_DOCKERFILE="$root/docker/Dockerfile.prebuilt"
# As for a user with no image yet: compose builds them (and rebuilds ours from this tarball).
docker rmi -f pegasus:dev pegasus-zookeeper:dev pegasus-prometheus:dev >/dev/null 2>&1 || true

cleanup() { "${compose[@]}" down -v >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
"${compose[@]}" down -v >/dev/null 2>&1 || true
"${compose[@]}" up -d

wait_healthy() {
  local deadline=$((SECONDS + 180))
  for service in "$@"; do
    while true; do
      id=$("${compose[@]}" ps -q "$service")
      state=$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id" 2>/dev/null || echo missing)
      [[ $state == healthy ]] && break
      if (( SECONDS > deadline )); then
        echo "$service is $state" >&2
        "${compose[@]}" logs --tail 20 "$service" >&2
        exit 1
      fi
      sleep 1
    done
  done
}
wait_healthy zookeeper meta1 meta2 meta3 replica1 replica2 replica3 collector prometheus
[[ $(docker inspect --format '{{.State.ExitCode}}' "$("${compose[@]}" ps -q configcheck)") == 0 ]]

# Every partition of `stat` served: pypegasus3 writes and reads it back.
deadline=$((SECONDS + 120))
# pypegasus3 writes pegasus.log into its working directory: keep it out of the tree.
set_get() { (cd "$work" && "$PEGASUS_PYTHON" "$root/tests/compose/set_get.py" "$@"); }
until set_get write "$metas" >/dev/null 2>&1; do
  (( SECONDS < deadline )) || { set_get write "$metas"; exit 1; }
  sleep 2
done
"${compose[@]}" restart replica2 >/dev/null
wait_healthy replica2
deadline=$((SECONDS + 120))
until set_get read "$metas" >/dev/null 2>&1; do
  (( SECONDS < deadline )) || { set_get read "$metas"; exit 1; }
  sleep 2
done
echo "compose: 8 services healthy, pypegasus3 set/get, replica2 restarted, data intact"

# The replica holding partition 0's primary is killed (docker kill) during a pypegasus3 write
# loop, and started again: nothing acknowledged is lost, and `stat` is fully healthy again.
shell() { "${CARGO_TARGET_DIR:-$HOME/.cache/pegasus-target}/release/pegasus_shell" --cluster "$metas"; }
primary=$(echo "app stat -d -j" | shell | python3 -c '
import json, sys
text = sys.stdin.read()
print(json.JSONDecoder().raw_decode(text[text.index("{"):])[0]["replicas"]["0"]["primary"])')
ip=${primary%:*}
victim=replica$(( ${ip##*.} - 20 ))
acked=$work/acked
(cd "$work" && exec "$PEGASUS_PYTHON" "$root/tests/compose/write_loop.py" "$metas" "$acked" "$work/stop") >/dev/null &
loop=$!
sleep 3
docker kill "$("${compose[@]}" ps -q "$victim")" >/dev/null
sleep 5
"${compose[@]}" start "$victim" >/dev/null
wait_healthy "$victim"
sleep 3
touch "$work/stop"
wait "$loop"
(( $(wc -l < "$acked") > 0 ))
(cd "$work" && "$PEGASUS_PYTHON" "$root/tests/compose/write_loop.py" "$metas" "$acked" verify)
deadline=$((SECONDS + 120))
until [[ $(echo "app stat -d" | shell | awk '/fully_healthy_partition_count/ {print $NF}') == 4 ]]; do
  (( SECONDS < deadline )) || { echo "app stat -d" | shell >&2; exit 1; }
  sleep 2
done
echo "compose: $victim (partition 0's primary) killed during a write loop and started again: $(wc -l < "$acked") acknowledged writes, none lost; fully healthy again"

# Backup and restore on the volume every meta and replica mounts (`backup`, the block service
# `local_service`): `stat` backed up, restored as `stat_restored`, which pypegasus3 reads.
app_id=$(echo "app stat -j" | shell | python3 -c '
import json, sys
text = sys.stdin.read()
print(json.JSONDecoder().raw_decode(text[text.index("{"):])[0]["general"]["app_id"])')
backup_id=$(echo "start_backup_app $app_id local_service" | shell | sed -n 's/.*backup_id \([0-9]*\).*/\1/p')
[[ -n $backup_id ]] || { echo "start_backup_app $app_id local_service" | shell >&2; exit 1; }
deadline=$((SECONDS + 120))
until [[ $(echo "query_backup_status $app_id $backup_id" | shell | awk -v id="$backup_id" '$1 == id {print $8}') == complete ]]; do
  (( SECONDS < deadline )) || { echo "query_backup_status $app_id" | shell >&2; exit 1; }
  sleep 1
done
restored=$(echo "restore_app -c compose -a stat -i $app_id -t $backup_id -b local_service -n stat_restored" | shell | sed -n 's/.*(app_id \([0-9]*\)).*/\1/p')
[[ -n $restored ]] || { echo "the restore was refused" >&2; exit 1; }
deadline=$((SECONDS + 120))
until echo "query_restore_status $restored" | shell | grep -q ": done,"; do
  (( SECONDS < deadline )) || { echo "query_restore_status $restored -d" | shell >&2; exit 1; }
  sleep 1
done
set_get read "$metas" stat_restored >/dev/null
echo "compose: stat backed up to the shared volume (backup $backup_id) and restored as stat_restored (table $restored); pypegasus3 reads it"

# The monitoring profile: Prometheus scrapes every role (3 metas, 3 replicas, the collector), and
# every expression of the Grafana dashboard returns data after the write load above.
"$PEGASUS_PYTHON" "$root/tests/compose/prometheus_check.py" http://172.28.0.41:9090 \
  "$root/docker/grafana/pegasus-dashboard.json" 7
