#!/usr/bin/env bash
# The release tarball: its name follows Pegasus's pattern, two packs of one build are
# byte-identical, the server runs from the unpacked folder with an empty environment, and ldd
# shows nothing beyond libc-level libraries. Run by `./run.sh test`.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
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
echo "pack: $name, reproducible ($(sha256sum < "$a" | cut -c1-16)), self-contained"
