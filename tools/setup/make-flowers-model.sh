#!/usr/bin/env bash
# Rebuild the committed flowers head in model/ from the photos, with the default recipe:
#   tools/setup/make-flowers-model.sh [PHOTO_FOLDER]
# Writes model/flowers-head.safetensors (head-only bundle, fp16, with a 50-per-class feature bank), labels.json, history.json,
# eval.json, accuracy.png, confusion.png, grid.png. Features come from the feature cache
# ($PETAL_CACHE/features; the first run computes them: ~5,900 backbone runs, minutes on 2 cores).
# Checks that the validation accuracy reported by `petal eval` is within 0.5 point of the one
# committed before (model/eval.json), and exits non-zero when it is not.
#   PETAL=path/to/petal   (default build/native/tools/petal; build it with tools/build.sh native)
#   OUT=folder            (default model/)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PETAL=${PETAL:-$ROOT/build/native/tools/petal}
DATA=${1:-${PETAL_DATA:-$ROOT/../shared/data}/flower_photos}
OUT=${OUT:-$ROOT/model}
[ -x "$PETAL" ] || { echo "make-flowers-model: $PETAL is missing; build it first: tools/build.sh native" >&2; exit 1; }
[ -d "$DATA" ] || { echo "make-flowers-model: no photo folder at $DATA; give it as the argument, or run: $PETAL download flowers" >&2; exit 1; }
mkdir -p "$OUT"

previous=""
if [ -f "$OUT/eval.json" ]; then
  previous=$(sed -n 's/^ *"accuracy": *\([0-9.eE+-]*\),*$/\1/p' "$OUT/eval.json" | head -1)
fi

"$PETAL" grid "$DATA" -o "$OUT/grid.png"
"$PETAL" extract "$DATA"
"$PETAL" train "$DATA" -o "$OUT/flowers-head.safetensors" --fp16 --history "$OUT/history.json" --labels "$OUT/labels.json"
# The page retrains with a bank of 50 training features per class so it keeps the old classes.
"$PETAL" export "$OUT/flowers-head.safetensors" --head-only --fp16 --data "$DATA" -o "$OUT/flowers-head.safetensors.tmp"
mv "$OUT/flowers-head.safetensors.tmp" "$OUT/flowers-head.safetensors"
"$PETAL" plot "$OUT/history.json" -o "$OUT/accuracy.png" --title "flowers head, recipe petal"
"$PETAL" eval "$OUT/flowers-head.safetensors" "$DATA" --confusion-png "$OUT/confusion.png"
"$PETAL" eval "$OUT/flowers-head.safetensors" "$DATA" --json > "$OUT/eval.json.tmp"
mv "$OUT/eval.json.tmp" "$OUT/eval.json"
"$PETAL" summary "$OUT/flowers-head.safetensors"

now=$(sed -n 's/^ *"accuracy": *\([0-9.eE+-]*\),*$/\1/p' "$OUT/eval.json" | head -1)
if [ -n "$previous" ]; then
  if awk -v a="$now" -v b="$previous" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.005) }'; then
    echo "make-flowers-model: validation accuracy $now (before: $previous): reproduced within 0.5 point"
  else
    echo "make-flowers-model: validation accuracy $now differs from the committed $previous by more than 0.5 point" >&2
    exit 1
  fi
else
  echo "make-flowers-model: validation accuracy $now"
fi
