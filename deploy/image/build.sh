#!/usr/bin/env bash
# Builds the service image from a compiled binary:
#   deploy/image/build.sh [BINARY] [IMAGE]
# BINARY defaults to target/release/unified-attributes (`cargo build --release`), IMAGE to
# unified-attributes:latest. The root filesystem holds the binary, the shared libraries it
# links (as ldd lists them, with the dynamic loader) and a passwd entry for the unprivileged
# user 10001; the image is built with buildah (chroot isolation, vfs storage: no daemon, no
# privileges beyond root in this machine).
set -euo pipefail

binary=${1:-target/release/unified-attributes}
image=${2:-unified-attributes:latest}
here=$(cd "$(dirname "$0")" && pwd)

[ -x "$binary" ] || { echo "build.sh: no executable at $binary (cargo build --release first)" >&2; exit 2; }
command -v buildah >/dev/null || { echo "build.sh: buildah is required (Debian package buildah)" >&2; exit 2; }

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
rootfs="$context/rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
install -m 0755 "$binary" "$rootfs/usr/local/bin/unified-attributes"
# Every library the binary links, at the path the loader looks for it.
ldd "$binary" | awk '/=> \// { print $3 } /^\s*\/[^ ]+/ { print $1 }' | sort -u |
    while read -r library; do
        mkdir -p "$rootfs$(dirname "$library")"
        cp -L "$library" "$rootfs$library"
    done
echo 'nonroot:x:10001:10001:nonroot:/nonexistent:/sbin/nologin' >"$rootfs/etc/passwd"
echo 'nonroot:x:10001:' >"$rootfs/etc/group"
cp "$here/Containerfile" "$context/Containerfile"

buildah --storage-driver vfs build --isolation chroot --layers=false \
    --file "$context/Containerfile" --tag "$image" "$context" >&2
echo "$image"
