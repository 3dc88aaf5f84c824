#!/usr/bin/env bash
# Builds the kernels with AddressSanitizer and runs the kernel tests (tests/ops and the fuzz tests) on
# that build once. Not run by CI (it needs the ASan runtime preloaded into Python). Usage:
#   tests/reliability/run_asan.sh [build_dir]     (default /tmp/asan)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${1:-/tmp/asan}"
PY="${PYTHON:-/work/venv/bin/python}"
cmake -S "$REPO" -B "$BUILD" -DPython_EXECUTABLE="$PY" -DRESEARCH_ASAN=ON > "$BUILD.cmake.log" 2>&1
cmake --build "$BUILD" -j2 > "$BUILD.build.log" 2>&1
LIB_DIR="$BUILD/lib"
mkdir -p "$LIB_DIR"
cp "$(find "$BUILD" -name libresearch_ops.so | head -1)" "$LIB_DIR/"
cp "$(find "$BUILD" -name _build_info.json | head -1)" "$LIB_DIR/"
cd "$REPO"
rm -f "$BUILD".asan-report.*
# libstdc++ is preloaded too: without it ASan's __cxa_throw interceptor finds no real __cxa_throw and
# aborts ("CHECK failed: asan_interceptors.cpp:320") on the first C++ exception TensorFlow throws.
RESEARCH_OPS_LIBRARY_DIR="$LIB_DIR" LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" \
  ASAN_OPTIONS="detect_leaks=0:log_path=$BUILD.asan-report" timeout 1800 "$(dirname "$PY")/pytest" -q -p no:cacheprovider \
  tests/ops tests/reliability/test_kernel_fuzz.py 2>&1 | tee "$BUILD.pytest.log" | tail -5
if ls "$BUILD".asan-report.* > /dev/null 2>&1; then
  echo "AddressSanitizer reports:" && head -50 "$BUILD".asan-report.*
  exit 1
fi
echo "AddressSanitizer: no report"
