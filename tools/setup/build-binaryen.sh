#!/usr/bin/env bash
# Build binaryen (wasm-opt, wasm-emscripten-finalize, ...) from its pinned Debian trixie source,
# once, into $PETAL_CACHE/binaryen/<version>-r<rev>/ (bin/ inside; reused while it exists).
# Why: Debian 12's binaryen 108 rejects the final relaxed-SIMD opcodes that clang-19 emits
# ("invalid code after SIMD prefix: 261"), so the relaxed-SIMD engine needs a newer one.
# Prints the prefix on stdout (--print-prefix: only that, building nothing). Builds under `nice` (a long C++ build; the machine is shared).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/deps.env"
CACHE=${PETAL_CACHE:-/var/cache/petal}
JOBS=${JOBS:-$(nproc)}
BUILD_REV=1   # bump when the flags below change
PREFIX=$CACHE/binaryen/$BINARYEN_VERSION-r$BUILD_REV
[ "${1:-}" = --print-prefix ] && { echo "$PREFIX"; exit 0; }
if [ -f "$PREFIX/.petal-ok" ]; then echo "$PREFIX"; exit 0; fi
mkdir -p "$CACHE/binaryen"
exec 9>"$CACHE/binaryen/.lock"
flock 9
if [ -f "$PREFIX/.petal-ok" ]; then echo "$PREFIX"; exit 0; fi
"$HERE/fetch-sources.sh" binaryen
SRC=$CACHE/src/binaryen-$BINARYEN_VERSION
BUILD=$CACHE/binaryen/build
rm -rf "$PREFIX"; mkdir -p "$BUILD"   # an interrupted build resumes where it stopped
echo "building binaryen $BINARYEN_VERSION in $BUILD; long (about half an hour on 2 cores), once" >&2
# Only the tools Emscripten runs; no tests, no -Werror (newer warnings of Debian's gcc). LLVM_DWARF
# stays on: its LLVM support headers are needed by other passes too.
cmake -G Ninja -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PREFIX" \
  -DBUILD_TESTS=OFF -DBUILD_EMSCRIPTEN_TOOLS_ONLY=ON -DBUILD_LLVM_DWARF=ON -DENABLE_WERROR=OFF \
  -DBYN_ENABLE_ASSERTIONS=OFF -DBUILD_STATIC_LIB=ON > "$BUILD.configure.log" 2>&1 \
  || { tail -30 "$BUILD.configure.log" >&2; echo "error: configuring binaryen failed (log: $BUILD.configure.log)" >&2; exit 1; }
nice -n 19 ninja -C "$BUILD" -j"$JOBS" install > "$BUILD.log" 2>&1 \
  || { tail -30 "$BUILD.log" >&2; echo "error: building binaryen failed (log: $BUILD.log)" >&2; exit 1; }
"$PREFIX/bin/wasm-opt" --version >&2
rm -rf "$BUILD"
touch "$PREFIX/.petal-ok"
echo "$PREFIX"
