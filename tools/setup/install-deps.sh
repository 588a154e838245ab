#!/usr/bin/env bash
# Install what Petal needs on Debian 12 (as root): compilers, Emscripten, header-only libraries,
# HDF5, Chromium (for browser tests) from apt; the JavaScript test/benchmark peers from npm.
# Quick when everything is already there.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PKGS=(build-essential cmake ninja-build pkg-config curl ca-certificates xz-utils patch git python3
      clang-14 libclang-rt-14-dev
      clang-19 lld-19 llvm-19 node-acorn
      emscripten binaryen wabt
      libstb-dev nlohmann-json3-dev libcli11-dev libgtest-dev googletest libhdf5-dev
      chromium fonts-dejavu-core libjpeg-turbo-progs)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "error: missing Debian packages: ${missing[*]}; run this as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=900 update -q >&2
  apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "${missing[@]}" >&2
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 18 ] || { echo "error: node $node_major is too old; Petal needs node 18 or newer" >&2; exit 1; }
cd "$ROOT"
if [ ! -d node_modules/playwright-core ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # onnxruntime-node's install script would try to download CUDA files; it is not needed.
  ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund >&2
fi
