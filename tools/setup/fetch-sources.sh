#!/usr/bin/env bash
# Fetch the pinned XNNPACK, pthreadpool, FXdiv and cpuinfo sources (Debian orig tarballs),
# check their sha256 and unpack them under $PETAL_CACHE/src/<name>-<version>.
#   fetch-sources.sh [binaryen] [emscripten]   (no argument: XNNPACK and its dependencies)
# Idempotent: an unpacked, verified tree is reused.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/deps.env"
CACHE=${PETAL_CACHE:-/var/cache/petal}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$CACHE/dl" "$CACHE/src"

fetch() {  # name pool-dir version sha256 [tarball suffix]
  local name=$1 dir=$2 ver=$3 sha=$4
  local file="${name}_${ver}.orig.${5:-tar.xz}" dest="$CACHE/src/$name-$ver"
  [ -f "$dest/.petal-ok" ] && return 0
  if ! { [ -f "$CACHE/dl/$file" ] && echo "$sha  $CACHE/dl/$file" | sha256sum -c --status; }; then
    echo "fetch: $MIRROR/pool/main/$dir/$name/$file" >&2
    if ! curl -fsSL --retry 3 -o "$CACHE/dl/$file.part" "$MIRROR/pool/main/$dir/$name/$file"; then
      echo "error: the Debian mirror did not serve $file ($MIRROR/pool/main/$dir/$name/)." >&2
      echo "       Set DEBIAN_MIRROR to a mirror that has Debian trixie/sid sources, or put the file in $CACHE/dl/." >&2
      exit 1
    fi
    mv "$CACHE/dl/$file.part" "$CACHE/dl/$file"
    if ! echo "$sha  $CACHE/dl/$file" | sha256sum -c --status; then
      echo "error: $file has sha256 $(sha256sum "$CACHE/dl/$file" | cut -d' ' -f1), expected $sha; refusing it." >&2
      rm -f "$CACHE/dl/$file"; exit 1
    fi
  fi
  rm -rf "$dest" && mkdir -p "$dest"
  # XNNPACK's tarball has no top directory; the others have one.
  if [ "$(tar tf "$CACHE/dl/$file" | cut -d/ -f1 | sort -u | wc -l)" -gt 1 ]; then
    tar xf "$CACHE/dl/$file" -C "$dest"
  else
    tar xf "$CACHE/dl/$file" -C "$dest" --strip-components=1
  fi
  touch "$dest/.petal-ok"
}
if [ $# -eq 0 ]; then
  fetch xnnpack     x "$XNNPACK_VERSION"     "$XNNPACK_SHA256"
  fetch pthreadpool p "$PTHREADPOOL_VERSION" "$PTHREADPOOL_SHA256"
  fetch fxdiv       f "$FXDIV_VERSION"       "$FXDIV_SHA256"
  fetch cpuinfo     c "$CPUINFO_VERSION"     "$CPUINFO_SHA256"
fi
for what in "$@"; do
  case $what in
    binaryen)   fetch binaryen   b "$BINARYEN_VERSION"   "$BINARYEN_SHA256" tar.gz ;;
    emscripten) fetch emscripten e "$EMSCRIPTEN_VERSION" "$EMSCRIPTEN_SHA256" ;;
    *) echo "error: fetch-sources.sh knows no source named $what" >&2; exit 2 ;;
  esac
done
echo "sources ready in $CACHE/src" >&2
