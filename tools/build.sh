#!/usr/bin/env bash
# Build Petal: native (engine, `petal` CLI, tests) and the two WebAssembly engines
# (SIMD + threads, SIMD single-thread) into web/engine/. XNNPACK comes from the cache that
# tools/setup/build-xnnpack.sh fills (built once per version).
#   tools/build.sh [native] [wasm] [asan]     (default: native wasm)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
JOBS=${JOBS:-$(nproc)}
targets=("$@"); [ ${#targets[@]} -eq 0 ] && targets=(native wasm)
for t in "${targets[@]}"; do
  case $t in
    native|asan)
      variant=native; dir=build/native; extra=()
      [ "$t" = asan ] && { variant=native-asan; dir=build/asan; extra=(-DPETAL_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo); }
      prefix=$("$ROOT/tools/setup/build-xnnpack.sh" "$variant")
      cmake -G Ninja -S "$ROOT" -B "$ROOT/$dir" -DPETAL_XNNPACK_PREFIX="$prefix" "${extra[@]}" >/dev/null
      ninja -C "$ROOT/$dir" -j"$JOBS" >&2
      ;;
    wasm)
      export NODE_PATH=/usr/share/nodejs${NODE_PATH:+:$NODE_PATH}; unset EM_CACHE
      mkdir -p "$ROOT/web/engine"
      # The Emscripten glue is CommonJS/classic-script; the repo's package.json says "module".
      echo '{"type": "commonjs"}' > "$ROOT/web/engine/package.json"
      for v in mt st; do
        prefix=$("$ROOT/tools/setup/build-xnnpack.sh" "wasm-$v")
        threads=OFF; [ $v = mt ] && threads=ON
        emcmake cmake -G Ninja -S "$ROOT" -B "$ROOT/build/wasm-$v" -DPETAL_XNNPACK_PREFIX="$prefix" \
          -DPETAL_WASM_THREADS=$threads -DPETAL_WASM_NAME=petal-$v >/dev/null
        ninja -C "$ROOT/build/wasm-$v" -j"$JOBS" >&2
        cp "$ROOT/build/wasm-$v/wasm/petal-$v.js" "$ROOT/build/wasm-$v/wasm/petal-$v.wasm" "$ROOT/web/engine/"
        if [ -f "$ROOT/build/wasm-$v/wasm/petal-$v.worker.js" ]; then cp "$ROOT/build/wasm-$v/wasm/petal-$v.worker.js" "$ROOT/web/engine/"; fi
        gzip -9 -k -f "$ROOT/web/engine/petal-$v.wasm"  # served to browsers that accept gzip (1.2 -> 0.3 MB)
      done
      ;;
    *) echo "unknown target $t (native, wasm, asan)" >&2; exit 2 ;;
  esac
done
