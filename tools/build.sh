#!/usr/bin/env bash
# Build Petal: native (engine, `petal` CLI, tests) and the two WebAssembly engines
# (SIMD + threads, SIMD single-thread) into web/engine/. XNNPACK comes from the cache that
# tools/setup/build-xnnpack.sh fills (built once per version).
#   tools/build.sh [native] [wasm] [wasm-relaxed] [asan]     (default: all but asan)
# wasm-relaxed: the same two engines with relaxed SIMD (petal-mt-relaxed, petal-st-relaxed), built
# with trixie's Emscripten + Debian 12's clang-19 + binaryen 120 (tools/setup/build-emscripten.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
JOBS=${JOBS:-$(nproc)}
targets=("$@"); [ ${#targets[@]} -eq 0 ] && targets=(native wasm wasm-relaxed)
wasm_engine() {  # name emcmake xnnpack-prefix cmake-options...: build web/engine/<name>.{js,wasm}
  local name=$1 emcmake=$2 prefix=$3; shift 3
  "$emcmake" cmake -G Ninja -S "$ROOT" -B "$ROOT/build/$name" -DPETAL_XNNPACK_PREFIX="$prefix" \
    -DPETAL_WASM_NAME="$name" "$@" >/dev/null
  ninja -C "$ROOT/build/$name" -j"$JOBS" >&2
  cp "$ROOT/build/$name/wasm/$name.js" "$ROOT/build/$name/wasm/$name.wasm" "$ROOT/web/engine/"
  if [ -f "$ROOT/build/$name/wasm/$name.worker.js" ]; then cp "$ROOT/build/$name/wasm/$name.worker.js" "$ROOT/web/engine/"; fi
  gzip -9 -k -f "$ROOT/web/engine/$name.wasm"  # served to browsers that accept gzip (1.2 -> 0.3 MB)
}
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
    wasm-relaxed)
      export NODE_PATH=/usr/share/nodejs${NODE_PATH:+:$NODE_PATH}; unset EM_CACHE
      mkdir -p "$ROOT/web/engine"
      echo '{"type": "commonjs"}' > "$ROOT/web/engine/package.json"
      emr=$("$ROOT/tools/setup/build-emscripten.sh")
      for v in mt st; do
        prefix=$("$ROOT/tools/setup/build-xnnpack.sh" "wasm-$v-relaxed")
        threads=OFF; [ $v = mt ] && threads=ON
        wasm_engine "petal-$v-relaxed" "$emr/emcmake" "$prefix" -DPETAL_WASM_THREADS=$threads -DPETAL_WASM_RELAXED_SIMD=ON
      done
      ;;
    *) echo "unknown target $t (native, wasm, wasm-relaxed, asan)" >&2; exit 2 ;;
  esac
done
