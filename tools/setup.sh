#!/usr/bin/env bash
# From nothing to a ready page: install dependencies (apt, npm), fetch and build XNNPACK (cached
# by version in $PETAL_CACHE, default /var/cache/petal), build the engine natively and for
# WebAssembly, import the pretrained ResNet-50 and make the page's default model.
# Then `npm start` serves the page. Run as root on Debian 12.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
step() { echo "== $*" >&2; }
step "dependencies";  tools/setup/install-deps.sh
step "build (native, wasm, wasm-relaxed)"; tools/build.sh native wasm wasm-relaxed
step "models"; tools/setup/make-models.sh
echo "Petal is ready: npm start  →  http://127.0.0.1:8080" >&2
