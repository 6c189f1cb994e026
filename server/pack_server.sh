#!/usr/bin/env bash
# ./run.sh pack_server: pegasus-server-<version>-<sha7>-<platform>-release.tar.gz, as Pegasus's
# pack_server names it, plus a PACKAGE file holding that name.
#
# bin/ holds pegasus_server (RocksDB and libstdc++ linked in: no LD_LIBRARY_PATH), pegasus_shell,
# pegasus_bench, pegasus_onebox, pegasus_cluster, configcheck, config.ini (the production template, %{xxx} to
# fill), config.min.ini (the onebox template) and DEPLOY.md; LICENSE, VERSION and FORMAT (the
# data format, `pegasus_server --format`) beside bin/.
#
# Reproducible: sorted entries, mtimes from the commit time (or $SOURCE_DATE_EPOCH), uid/gid 0,
# no name or time in the gzip header. Two packs of one build are byte-identical.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root}
bin=${CARGO_TARGET_DIR:-$HOME/.cache/pegasus-target}/release
# PEGASUS_PACKAGE_VERSION names a package apart (the deploy tool's upgrade test packs a second one).
version=${PEGASUS_PACKAGE_VERSION:-$(awk -F'"' '/^version = / && !v {v = $2} END {print v}' "$root/Cargo.toml")}
sha=$(git -C "$root" rev-parse --short=7 HEAD)
glibc=$(ldd --version | awk 'NR == 1 {print $NF}')
name="pegasus-server-$version-$sha-glibc$glibc-release"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct)}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/$name/bin"
for b in pegasus_server pegasus_shell pegasus_bench pegasus_onebox pegasus_cluster configcheck; do
  install -m 0755 "$bin/$b" "$stage/$name/bin/$b"
done
install -m 0644 "$root/configcheck/tests/fixtures/reference/pegasus-config.ini" "$stage/$name/bin/config.ini"
install -m 0644 "$root/tools/src/onebox/config.min.ini" "$stage/$name/bin/config.min.ini"
install -m 0644 "$root/server/DEPLOY.md" "$stage/$name/bin/DEPLOY.md"
install -m 0644 "$root/LICENSE" "$stage/$name/LICENSE"
echo "Pegasus Server $version ($sha) glibc$glibc release" > "$stage/$name/VERSION"
# The data format its server writes and the newest it reads (pegasus_cluster compares it with the
# cluster's before an upgrade or rollback).
"$bin/pegasus_server" --format > "$stage/$name/FORMAT"

tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
    --format=gnu -C "$stage" -cf - "$name" | gzip -9 -n > "$out/$name.tar.gz"
echo "$name" > "$out/PACKAGE"
echo "$out/$name.tar.gz"
