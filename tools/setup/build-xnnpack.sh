#!/usr/bin/env bash
# Build XNNPACK + pthreadpool + cpuinfo static libraries from the pinned Debian sources, once
# per variant, into $PETAL_CACHE/xnnpack/<version>-<variant>/ (reused while it exists).
#   variants: native | native-asan | wasm-mt (SIMD128 + pthreads) | wasm-st (SIMD128, no threads)
#             | wasm-mt-relaxed | wasm-st-relaxed (relaxed SIMD: XNNPACK's FMA and int8 dot-product
#               kernels; built with tools/setup/build-emscripten.sh's Emscripten, clang-19)
# Prints the prefix (lib/ and include/ inside) on stdout.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/deps.env"
VARIANT=${1:?usage: build-xnnpack.sh native|native-asan|wasm-mt|wasm-st|wasm-mt-relaxed|wasm-st-relaxed}
CACHE=${PETAL_CACHE:-/var/cache/petal}
JOBS=${JOBS:-$(nproc)}
"$HERE/fetch-sources.sh"
SRC=$CACHE/src
XNN=$SRC/xnnpack-$XNNPACK_VERSION PTP=$SRC/pthreadpool-$PTHREADPOOL_VERSION
CPUI=$SRC/cpuinfo-$CPUINFO_VERSION FXD=$SRC/fxdiv-$FXDIV_VERSION
BUILD_REV=4   # bump when the flags below change, so caches are rebuilt
# Our own XNNPACK patches, applied in this order; the cache is keyed by their content too. The
# relaxed ones only change the relaxed-SIMD build, so only those variants are keyed by them.
COMMON_PATCHES=(xnnpack-weights-outer.patch xnnpack-residual-add.patch xnnpack-winograd.patch)
RELAXED_PATCHES=(xnnpack-relaxed-i7dot.patch)
PATCHES=("${COMMON_PATCHES[@]}" "${RELAXED_PATCHES[@]}")
patch_id() { (cd "$HERE" && cat "$@" | sha256sum | cut -c1-12); }
PATCH_ID=$(patch_id "${PATCHES[@]}")
KEY=$VARIANT BUILD_ID=$(patch_id "${COMMON_PATCHES[@]}")
case $VARIANT in *-relaxed) KEY=$VARIANT-em$EMSCRIPTEN_VERSION BUILD_ID=$PATCH_ID ;; esac
PREFIX=$CACHE/xnnpack/$XNNPACK_VERSION-$KEY-r$BUILD_REV-$BUILD_ID
if [ -f "$PREFIX/.petal-ok" ]; then echo "$PREFIX"; exit 0; fi
# one build per variant at a time (parallel set-ups would clobber each other's build folder)
mkdir -p "$CACHE/xnnpack"
exec 9>"$CACHE/xnnpack/.lock-$VARIANT"
flock 9
if [ -f "$PREFIX/.petal-ok" ]; then echo "$PREFIX"; exit 0; fi

# The source folder is shared by the variants: patch it under its own lock.
exec 8>"$CACHE/xnnpack/.lock-src"
flock 8
# A source folder patched with other versions of our patches (an older checkout) starts again
# from the tarball.
if [ ! -f "$XNN/.petal-patches-$PATCH_ID" ] &&
   ls -A "$XNN" 2>/dev/null | grep -qE '^\.petal-(patches-|(weights-outer|residual-add|winograd)-patched$)'; then
  echo "XNNPACK's source holds other versions of our patches: extracting it afresh" >&2
  rm -rf "$XNN"
  "$HERE/fetch-sources.sh"
fi
# XNNPACK's CMake (this snapshot) refuses Emscripten and never adds the wasm kernels;
# pthreadpool always builds its single-thread shim under Emscripten. These edits are
# inert for native builds: the first teaches its CMake the Emscripten system name, the second
# makes it pick the wasm kernels there.
if [ ! -f "$XNN/.petal-wasm-patched" ]; then
  sed -i 's/MATCHES "^(Android|Darwin|iOS|Linux|Windows|CYGWIN|MSYS|QURT)\$")/MATCHES "^(Android|Darwin|iOS|Linux|Windows|CYGWIN|MSYS|QURT|Emscripten)$")/' "$XNN/CMakeLists.txt"
  sed -i '0,/^ELSEIF(CMAKE_SYSTEM_PROCESSOR MATCHES "\^i\[3-7\]86\$")/s//ELSEIF(CMAKE_SYSTEM_NAME STREQUAL "Emscripten")\n  SET(XNNPACK_TARGET_PROCESSOR "wasm")\n&/' "$XNN/CMakeLists.txt"
  sed -i 's/^ADD_LIBRARY(xnnpack-base INTERFACE)/IF(XNNPACK_TARGET_PROCESSOR STREQUAL "wasm")\n  LIST(APPEND PROD_MICROKERNEL_SRCS ${PROD_WASM_MICROKERNEL_SRCS} ${PROD_WASMSIMD_MICROKERNEL_SRCS})\n  LIST(APPEND NON_PROD_MICROKERNEL_SRCS ${NON_PROD_WASM_MICROKERNEL_SRCS} ${NON_PROD_WASMSIMD_MICROKERNEL_SRCS})\nENDIF()\n&/' "$XNN/CMakeLists.txt"
  for pat in 'QURT|Emscripten' 'SET(XNNPACK_TARGET_PROCESSOR "wasm")' 'PROD_WASMSIMD_MICROKERNEL_SRCS})'; do
    grep -qF "$pat" "$XNN/CMakeLists.txt" || { echo "error: patching XNNPACK's CMakeLists.txt failed ($pat)" >&2; exit 1; }
  done
  grep -rlZ '#include <arm_neon.h>' "$XNN/src" --include='*wasm*' | xargs -0 -r sed -i 's/#include <arm_neon.h>/#include <wasm_simd128.h>/'
  sed -i 's/^IF(EMSCRIPTEN)$/IF(EMSCRIPTEN AND NOT CMAKE_C_FLAGS MATCHES "-pthread")/' "$PTP/CMakeLists.txt"
  sed -i 's/^IF(CMAKE_SYSTEM_NAME STREQUAL "Linux")$/IF(CMAKE_SYSTEM_NAME STREQUAL "Linux" OR EMSCRIPTEN)/' "$PTP/CMakeLists.txt"
  grep -q 'IF(EMSCRIPTEN AND NOT CMAKE_C_FLAGS MATCHES "-pthread")' "$PTP/CMakeLists.txt" \
    || { echo "error: patching pthreadpool's CMakeLists.txt failed" >&2; exit 1; }
  touch "$XNN/.petal-wasm-patched"
fi
# The relaxed-SIMD kernels join the wasm build only when compiled with -mrelaxed-simd (XNNPACK's
# configs then pick them: XNN_ARCH_WASMRELAXEDSIMD); inert for every other variant.
if [ ! -f "$XNN/.petal-wasm-relaxed-patched" ]; then
  sed -i 's/^ADD_LIBRARY(xnnpack-base INTERFACE)/IF(XNNPACK_TARGET_PROCESSOR STREQUAL "wasm" AND CMAKE_C_FLAGS MATCHES "-mrelaxed-simd")\n  LIST(APPEND PROD_MICROKERNEL_SRCS ${PROD_WASMRELAXEDSIMD_MICROKERNEL_SRCS})\n  LIST(APPEND NON_PROD_MICROKERNEL_SRCS ${NON_PROD_WASMRELAXEDSIMD_MICROKERNEL_SRCS})\nENDIF()\n&/' "$XNN/CMakeLists.txt"
  grep -qF 'PROD_WASMRELAXEDSIMD_MICROKERNEL_SRCS})' "$XNN/CMakeLists.txt" \
    || { echo "error: patching XNNPACK's CMakeLists.txt for relaxed SIMD failed" >&2; exit 1; }
  touch "$XNN/.petal-wasm-relaxed-patched"
fi
# Our patches (each explains itself at its top and in its comments). Each is switched per
# convolution by a flag declared in the patched include/xnnpack.h (XNN_FLAG_PETAL_*; Petal passes
# them from BackboneOptions), so that one build measures each on and off (petal bench --variant
# xnnorder / direct / unfused):
# - xnnpack-weights-outer.patch: when a convolution's packed weights outgrow the cache, sweep the
#   output pixels for each block of output channels rather than all output channels for each
#   block of pixels. ResNet-50, native, 1 thread: stages 4 and 5 took 25.7 + 26.4 ms, now 18.3 + 15.0.
# - xnnpack-residual-add.patch: the subgraph optimiser fuses a residual Add (and its Clamp) into
#   the convolution before it, which adds the residual (and clamps) to each block of its output
#   while the block is in cache, so ResNet's 16 Adds and their ReLUs need no passes over memory.
#   Native, 2 threads, batch 8: fp32 22.5 -> 20.9 ms per image, int8 10.1 -> 9.1.
# - xnnpack-winograd.patch: Winograd F(2x2, 3x3) for fp32 3x3 stride-1 convolutions of 32-256
#   channels, 2.25x fewer multiplies. Native, 2 threads, batch 8: 29.4 -> 26.3 ms per image.
# - xnnpack-relaxed-i7dot.patch (relaxed-SIMD build only; no flag: it picks kernels once, by CPU):
#   where XNNPACK's check turns its relaxed int8 dot-product kernels down (V8 on x86), run them
#   on 7-bit dynamically quantized inputs, for which the relaxed dot product is exact everywhere.
if [ ! -f "$XNN/.petal-patches-$PATCH_ID" ]; then
  for p in "${PATCHES[@]}"; do
    patch -d "$XNN" -p1 --forward --quiet < "$HERE/$p" \
      || { echo "error: applying tools/setup/$p to $XNN failed; delete $XNN to fetch it afresh" >&2; exit 1; }
  done
  touch "$XNN/.petal-patches-$PATCH_ID"
fi
flock -u 8

CMAKE=(cmake); FLAGS=""
case $VARIANT in
  native)      FLAGS="-fPIC" ;;
  native-asan) FLAGS="-fPIC -fsanitize=address,undefined -fno-omit-frame-pointer -g1" ;;
  wasm-mt)     CMAKE=(emcmake cmake); FLAGS="-msimd128 -pthread" ;;
  wasm-st)     CMAKE=(emcmake cmake); FLAGS="-msimd128" ;;
  wasm-*-relaxed)
    EMR=$("$HERE/build-emscripten.sh"); CMAKE=("$EMR/emcmake" cmake); FLAGS="-msimd128 -mrelaxed-simd"
    [ "$VARIANT" = wasm-mt-relaxed ] && FLAGS="$FLAGS -pthread" ;;
  *) echo "unknown variant $VARIANT" >&2; exit 2 ;;
esac
if [[ "${CMAKE[0]}" == *emcmake ]]; then
  command -v emcmake >/dev/null || { echo "error: emcmake not found; install Debian's emscripten (apt-get install emscripten)" >&2; exit 1; }
  export NODE_PATH=/usr/share/nodejs${NODE_PATH:+:$NODE_PATH}; unset EM_CACHE
fi
BUILD=$CACHE/xnnpack/build-$VARIANT
rm -rf "$BUILD" "$PREFIX"; mkdir -p "$BUILD"
echo "building XNNPACK $XNNPACK_VERSION ($VARIANT) in $BUILD; a few minutes, once" >&2
"${CMAKE[@]}" -G Ninja -S "$XNN" -B "$BUILD" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS="$FLAGS" -DCMAKE_CXX_FLAGS="$FLAGS" \
  -DXNNPACK_LIBRARY_TYPE=static -DXNNPACK_BUILD_TESTS=OFF -DXNNPACK_BUILD_BENCHMARKS=OFF \
  -DXNNPACK_BUILD_ALL_MICROKERNELS=OFF -DXNNPACK_ENABLE_KLEIDIAI=OFF \
  $( [[ "${CMAKE[0]}" == *emcmake ]] && echo -DXNNPACK_ENABLE_ASSEMBLY=OFF ) \
  -DCPUINFO_SOURCE_DIR="$CPUI" -DFXDIV_SOURCE_DIR="$FXD" -DPTHREADPOOL_SOURCE_DIR="$PTP" \
  -DPython_EXECUTABLE="$(command -v python3)" > "$BUILD.configure.log" 2>&1 \
  || { tail -30 "$BUILD.configure.log" >&2; echo "error: configuring XNNPACK failed (log: $BUILD.configure.log)" >&2; exit 1; }
ninja -C "$BUILD" -j"$JOBS" XNNPACK pthreadpool > "$BUILD.log" 2>&1 \
  || { tail -30 "$BUILD.log" >&2; echo "error: building XNNPACK failed (log: $BUILD.log)" >&2; exit 1; }
mkdir -p "$PREFIX/lib" "$PREFIX/include"
cp "$BUILD/libXNNPACK.a" "$BUILD/libmicrokernels-prod.a" "$BUILD/pthreadpool/libpthreadpool.a" "$PREFIX/lib/"
[ -f "$BUILD/cpuinfo/libcpuinfo.a" ] && cp "$BUILD/cpuinfo/libcpuinfo.a" "$PREFIX/lib/"
cp "$XNN/include/"*.h "$PTP/include/pthreadpool.h" "$PREFIX/include/"
rm -rf "$BUILD"
touch "$PREFIX/.petal-ok"
echo "$PREFIX"
