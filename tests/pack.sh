#!/usr/bin/env bash
# The release tarball: its name follows Pegasus's pattern, two packs of one build are
# byte-identical, the server runs from the unpacked folder with an empty environment, ldd shows
# nothing beyond libc-level libraries, and the unpacked bin/ starts a onebox (ZooKeeper from the
# system, ports 34601…) that its own shell can talk to. Run by `./run.sh test`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
onebox=
cleanup() {
  [[ -n $onebox ]] && "$onebox/bin/pegasus_onebox" --root "$work/onebox" clear_onebox >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/a" "$work/b"
a=$("$root/server/pack_server.sh" "$work/a")
b=$("$root/server/pack_server.sh" "$work/b")
name=$(cat "$work/a/PACKAGE")
[[ $name =~ ^pegasus-server-[0-9]+\.[0-9]+\.[0-9]+-[0-9a-f]{7}-glibc[0-9.]+-release$ ]] || { echo "bad name $name" >&2; exit 1; }
[[ $(sha256sum < "$a") == $(sha256sum < "$b") ]] || { echo "two packs differ" >&2; exit 1; }
tar xzf "$a" -C "$work"
version=$(env -i "$work/$name/bin/pegasus_server" --version)
[[ $version == "pegasus_server "* ]] || { echo "bad --version: $version" >&2; exit 1; }
for f in "$work/$name"/bin/{pegasus_server,pegasus_shell,configcheck}; do
  extra=$(ldd "$f" | awk '{print $1}' | grep -vE '^(linux-vdso\.so|libc\.so|libm\.so|libgcc_s\.so|libpthread\.so|libdl\.so|librt\.so|/lib64/ld-linux)' || true)
  [[ -z $extra ]] || { echo "$f needs $extra" >&2; exit 1; }
done
env -i "$work/$name/bin/configcheck" check --offline "$work/$name/bin/config.min.ini" >/dev/null 2>&1 && { echo "the onebox template must not pass unfilled" >&2; exit 1; }
# The unpacked package alone runs a cluster: only PATH (for java) and ZOOKEEPER_HOME pass through.
onebox="$work/$name"
run() { env -i PATH="$PATH" ${ZOOKEEPER_HOME:+ZOOKEEPER_HOME="$ZOOKEEPER_HOME"} "$@"; }
run "$onebox/bin/pegasus_onebox" --root "$work/onebox" start_onebox --wait_healthy >"$work/start.log" 2>&1 \
  || { cat "$work/start.log" >&2; echo "the unpacked package did not start a onebox" >&2; exit 1; }
nodes=$(echo "nodes" | run "$onebox/bin/pegasus_shell" 2>&1 || true)
alive=$(grep -cw ALIVE <<<"$nodes" || true)
[[ $alive -ge 3 ]] || { echo "$nodes" >&2; echo "the onebox from the package has $alive live replicas" >&2; exit 1; }
echo "pack: onebox from the unpacked bin/ up, $alive replicas alive"
echo "pack: $name, reproducible ($(sha256sum < "$a" | cut -c1-16)), self-contained"
