#!/usr/bin/env bash
# Every test, from nothing: installs what is missing, builds (native, wasm, ASan), makes the
# models, then runs the GoogleTest suite (plain and under ASan + UBSan), the node tests of the
# wasm engine, the browser tests in headless Chromium, and a short fuzzing run.
# Slow builds are cached outside the clone ($PETAL_CACHE, default /var/cache/petal).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
LOGS=$ROOT/test-results/logs
mkdir -p "$LOGS"
step() { echo; echo "== $* ($(date +%H:%M:%S))"; }
die() { echo "petal tests: $*" >&2; echo "0 passed, 1 failed"; exit 1; }

step "dependencies"; tools/setup/install-deps.sh || die "installing dependencies failed"
step "build: native, wasm, wasm-relaxed, asan"; tools/build.sh native wasm wasm-relaxed asan || die "the build failed"
step "models"; tools/setup/make-models.sh || die "making the models failed"

passed=0 failed=0 failed_suites=()
count() {  # suite-name log exit-code: add the runner's own pass/fail counts
  local name=$1 log=$2 rc=$3 p f
  case $name in
    gtest*) p=$(grep -c '^\[       OK \]' "$log"); f=$(grep -c '^\[  FAILED  \] [A-Za-z].*(' "$log") ;;
    node*|browser*) p=$(sed -n 's/^# pass \([0-9]*\)/\1/p' "$log" | tail -1); f=$(sed -n 's/^# fail \([0-9]*\)/\1/p' "$log" | tail -1) ;;
    fuzz*) p=$(grep -c '^fuzz .*no findings in Petal' "$log"); f=$(grep -c '^fuzz .*FINDING' "$log") ;;
  esac
  p=${p:-0} f=${f:-0}
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
  passed=$((passed + p)) failed=$((failed + f))
  [ "$rc" = 0 ] || failed_suites+=("$name (log: $log)")
  echo "-- $name: $p passed, $f failed"
}
run() {  # name command...
  local name=$1; shift
  step "$name"
  "$@" 2>&1 | tee "$LOGS/$name.log"
  count "$name" "$LOGS/$name.log" "${PIPESTATUS[0]}"
}
run gtest build/native/tests/cpp/petal_tests
# Under ASan + UBSan: everything except the long real-photo sweeps (same code paths, 10x slower).
run gtest-asan env ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=tests/cpp/lsan.supp UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  build/asan/tests/cpp/petal_tests --gtest_filter=-Golden.DaisiesAreDaisiesInImageNetTop5:*Slow*
run node node --test --test-concurrency=1 tests/node/
run browser node --test --test-concurrency=1 tests/browser/
if [ -x tools/fuzz.sh ]; then run fuzz tools/fuzz.sh short; fi

echo
[ ${#failed_suites[@]} -eq 0 ] || printf 'failed: %s\n' "${failed_suites[@]}"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
