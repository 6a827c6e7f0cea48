#!/usr/bin/env bash
# Builds the local cluster's images as `docker save` tarballs, without pulling anything and without a container
# engine: each root filesystem is assembled from files of installed Debian packages (binaries plus the shared
# libraries `ldd` names), then written by mkimage.mjs.
#   localhost/nsm-ts:latest   every nsm-ts component (`nsm <command>`): node, dist/, production node_modules,
#                             the fdpass addon, nft (TF forwarder), busybox for `kubectl exec` debugging
#   localhost/spire:1.13.3    spire-server, spire-agent (.cache/spire/bin, from scripts/build-spire.sh) + busybox
#   localhost/pause:1         the sandbox process (scripts/k8s/pause.c, static)
#   localhost/busybox:1       example client pods (Debian busybox-static)
#   localhost/coredns:1       cluster DNS (scripts/k8s/build.sh builds it)
# Output: $NSM_K8S_DIR/images/*.tar (default /var/lib/nsm-ts-k8s/images). Needs `npm run build` done first.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
dir=${NSM_K8S_DIR:-/var/lib/nsm-ts-k8s}
out=$dir/images
spire_bin=${NSM_SPIRE_BIN_DIR:-$repo/.cache/spire/bin}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
start=$(date +%s)

# copy_libs ROOTFS FILE...: every shared library the files load, at its host path.
copy_libs() {
  local root=$1; shift
  for f in "$@"; do
    ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | while read -r lib; do
      [ -e "$root$lib" ] || cp --parents -L "$lib" "$root"
    done
  done
}
# copy_with_libs ROOTFS FILE...: the files at their host paths, and their libraries.
copy_with_libs() {
  local root=$1; shift
  for f in "$@"; do cp --parents -L "$f" "$root"; done
  copy_libs "$root" "$@"
}
# base_fs ROOTFS: users, /tmp, busybox with the applets worth having in a debugging shell.
base_fs() {
  local root=$1
  mkdir -p "$root/etc" "$root/tmp" "$root/bin"
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
  cp /bin/busybox "$root/bin/busybox"
  for a in sh ls cat ps ip ping sleep echo grep; do ln -sf busybox "$root/bin/$a"; done
}

# ---- pause ----
mkdir -p "$work/pause"
gcc -Os -static -o "$work/pause/pause" "$repo/scripts/k8s/pause.c"
strip "$work/pause/pause"
node "$repo/scripts/k8s/mkimage.mjs" "$out/pause.tar" localhost/pause:1 "$work/pause" --entrypoint '["/pause"]'

# ---- busybox ----
mkdir -p "$work/busybox/bin" "$work/busybox/etc" "$work/busybox/tmp"
cp /bin/busybox "$work/busybox/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$work/busybox/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$work/busybox/etc/passwd"
printf 'root:x:0:\n' >"$work/busybox/etc/group"
chmod 1777 "$work/busybox/tmp"
node "$repo/scripts/k8s/mkimage.mjs" "$out/busybox.tar" localhost/busybox:1 "$work/busybox" --cmd '["/bin/sh"]' --env PATH=/bin

# ---- coredns ----
. "$repo/scripts/k8s/env.sh"
coredns=$(ls "${NSM_K8S_CACHE:-/var/cache/nsm-ts/k8s}"/coredns-*/coredns 2>/dev/null | tail -1)
[ -x "$coredns" ] || { echo "images.sh: no CoreDNS in the cache: run scripts/k8s/build.sh" >&2; exit 1; }
mkdir -p "$work/coredns"
cp "$coredns" "$work/coredns/coredns"
node "$repo/scripts/k8s/mkimage.mjs" "$out/coredns.tar" localhost/coredns:1 "$work/coredns" --entrypoint '["/coredns"]'

# ---- nsm-ts ----
[ -f "$repo/dist/.built" ] || { echo "images.sh: dist/ is not built: run npm run build" >&2; exit 1; }
[ -f "$repo/native/build/fdpass.node" ] || { echo "images.sh: native/build/fdpass.node is missing: run npm run build" >&2; exit 1; }
r=$work/nsm
base_fs "$r"
copy_with_libs "$r" "$(command -v node)" /usr/sbin/nft
app=$r/app
mkdir -p "$app/native/build"
cp -a "$repo/package.json" "$repo/package-lock.json" "$repo/bin" "$app/"
(cd "$repo/dist" && tar --exclude=./bench --exclude='*.map' -cf - .) | (mkdir -p "$app/dist" && tar -C "$app/dist" -xf -)
cp "$repo/native/build/fdpass.node" "$app/native/build/"
cp -a "$repo/node_modules" "$app/"
(cd "$app" && npm prune --omit=dev --no-audit --no-fund --loglevel=error >/dev/null)
# What production never loads: sources maps, type declarations, docs, other platforms' prebuilt addons,
# better-sqlite3's build intermediates and bundled SQLite sources.
find "$app/node_modules" \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.md' -o -name '*.markdown' \) -type f -delete
# tsx and esbuild only serve runs from source (dist/ is all the image runs).
rm -rf "$app/node_modules/tsx" "$app/node_modules/esbuild" "$app/node_modules/@esbuild"
rm -rf "$app/node_modules/@koromix/koffi-linux-x64/musl_x64" "$app/node_modules/better-sqlite3/deps" \
  "$app/node_modules/better-sqlite3/src" "$app/node_modules/better-sqlite3/build/Release/obj.target" \
  "$app/node_modules/better-sqlite3/build/Release/obj" "$app/node_modules/better-sqlite3/build/Release/.deps"
for p in "$app"/node_modules/netlink/prebuilds/*; do [ "$(basename "$p")" = linux-x64 ] || rm -rf "$p"; done
rm -f "$app/package-lock.json"
mkdir -p "$r/var/lib/networkservicemesh"
node "$repo/scripts/k8s/mkimage.mjs" "$out/nsm-ts.tar" localhost/nsm-ts:latest "$r" \
  --entrypoint '["/usr/bin/node", "/app/bin/nsm.js"]' --env PATH=/usr/sbin:/usr/bin:/bin --env NODE_ENV=production

# ---- spire ----
if [ -x "$spire_bin/spire-server" ]; then
  r=$work/spire
  base_fs "$r"
  mkdir -p "$r/opt/spire/bin"
  for b in spire-server spire-agent; do strip -o "$r/opt/spire/bin/$b" "$spire_bin/$b"; done
  copy_libs "$r" "$r/opt/spire/bin/spire-server" "$r/opt/spire/bin/spire-agent"
  node "$repo/scripts/k8s/mkimage.mjs" "$out/spire.tar" localhost/spire:1.13.3 "$r" --env PATH=/opt/spire/bin:/bin
else
  echo "images.sh: no SPIRE in $spire_bin (scripts/build-spire.sh): localhost/spire not built" >&2
fi
ls -la "$out"
echo "images.sh: done in $(($(date +%s) - start)) s"
