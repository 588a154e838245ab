#!/usr/bin/env bash
# Prepare Emscripten from its pinned Debian trixie source to run with Debian 12's clang-19/lld-19
# and binaryen 120 (tools/setup/build-binaryen.sh), once, in $PETAL_CACHE/emscripten/<version>-r<rev>/
# (its system libraries are built into its own cache there). Prints that folder: its emcc, em++,
# emcmake are the relaxed-SIMD toolchain.
# Why: Debian 12's Emscripten 3.1.6 (clang 14, binaryen 108) cannot emit or pass through the final
# relaxed-SIMD opcodes. Trixie ships this Emscripten with LLVM 19 and binaryen 120, the same trio.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/deps.env"
CACHE=${PETAL_CACHE:-/var/cache/petal}
export EMCC_CORES=${JOBS:-$(nproc)}   # embuilder's parallel jobs
BUILD_REV=1   # bump when the steps below change
PREFIX=$CACHE/emscripten/$EMSCRIPTEN_VERSION-r$BUILD_REV
if [ -f "$PREFIX/.petal-ok" ]; then echo "$PREFIX"; exit 0; fi
LLVM=/usr/lib/llvm-19/bin
for t in clang wasm-ld llvm-ar llvm-nm; do
  [ -x "$LLVM/$t" ] || { echo "error: $LLVM/$t is missing: apt-get install clang-19 lld-19 llvm-19" >&2; exit 1; }
done
[ -f /usr/share/nodejs/acorn/package.json ] || { echo "error: acorn is missing: apt-get install node-acorn" >&2; exit 1; }
mkdir -p "$CACHE/emscripten"
exec 9>"$CACHE/emscripten/.lock"
flock 9
if [ -f "$PREFIX/.petal-ok" ]; then echo "$PREFIX"; exit 0; fi
BYN=$("$HERE/build-binaryen.sh" --print-prefix)
if [ ! -f "$PREFIX/.petal-tree" ]; then
  "$HERE/fetch-sources.sh" emscripten
  rm -rf "$PREFIX"
  cp -a "$CACHE/src/emscripten-$EMSCRIPTEN_VERSION" "$PREFIX"
  rm -f "$PREFIX/.petal-ok"
  cd "$PREFIX"
  # What Debian's packaging does too: expect LLVM 19 (its patch 0022), and regenerate the DOM key
  # code tables that the +dfsg tarball leaves out (debian/rules runs the same script).
  sed -i 's/^EXPECTED_LLVM_VERSION = 20$/EXPECTED_LLVM_VERSION = 19/' tools/shared.py
  grep -q '^EXPECTED_LLVM_VERSION = 19$' tools/shared.py || { echo "error: patching Emscripten's tools/shared.py failed" >&2; exit 1; }
  python3 tools/create_dom_pk_codes.py >/dev/null
  # The JS optimizer imports acorn as an ES module (NODE_PATH does not apply): Debian's node-acorn.
  mkdir -p node_modules && ln -sfn /usr/share/nodejs/acorn node_modules/acorn
  printf "LLVM_ROOT = '%s'\nBINARYEN_ROOT = '%s'\nNODE_JS = '%s'\nCACHE = '%s'\n" \
    "$LLVM" "$BYN" "$(command -v node)" "$PREFIX/cache" > .emscripten
  touch .petal-tree
fi
cd "$PREFIX"
# The system libraries Petal's two builds link (SIMD + threads, single thread; C++ exceptions,
# embind), built now, so that parallel builds never race to fill the cache. Then freeze it.
echo "building Emscripten $EMSCRIPTEN_VERSION's system libraries in $PREFIX/cache; a quarter hour, once" >&2
nice -n 19 ./embuilder build libc libc-mt libcompiler_rt libcompiler_rt-mt libc++ libc++-mt libc++abi libc++abi-mt \
  libdlmalloc libdlmalloc-mt libembind-rtti libsockets libsockets-mt libstubs libnoexit crt1 >&2
"$HERE/build-binaryen.sh" >/dev/null   # linking needs it
probe=$(mktemp -d)
printf '#include <emscripten/bind.h>\n#include <thread>\n#include <string>\nstd::string f() { std::string s; std::thread t([&] { s = "ok"; }); t.join(); try { throw 1; } catch (int) {} return s; }\nEMSCRIPTEN_BINDINGS(p) { emscripten::function("f", &f); }\n' > "$probe/p.cpp"
for threads in "-pthread" ""; do
  nice -n 19 ./em++ -O3 -msimd128 -fexceptions --bind $threads "$probe/p.cpp" -o "$probe/p.js" > "$probe/log" 2>&1 \
    || { tail -30 "$probe/log" >&2; echo "error: Emscripten $EMSCRIPTEN_VERSION could not build a probe program ($threads)" >&2; exit 1; }
done
rm -rf "$probe"
echo "FROZEN_CACHE = True" >> .emscripten
touch "$PREFIX/.petal-ok"
echo "$PREFIX"
