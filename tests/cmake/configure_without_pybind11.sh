#!/usr/bin/env bash
# Configure must fail, naming pybind11 and the way out, when pybind11 is missing (simulated with
# CMAKE_DISABLE_FIND_PACKAGE_pybind11), and succeed without the module when UCP_BUILD_PYTHON=OFF.
# Usage: configure_without_pybind11.sh CMAKE SOURCE_DIR   (each configure in its own mktemp folder)
set -u
cmake_bin=$1 src=$2
work=$(mktemp -d -t ucp_configure_without_pybind11.XXXXXX)
trap 'rm -rf "$work"' EXIT
if "$cmake_bin" -S "$src" -B "$work/on" -G Ninja -DCMAKE_DISABLE_FIND_PACKAGE_pybind11=TRUE \
    >"$work/on.log" 2>&1; then
  echo "FAIL: configure succeeded without pybind11 (the Python module was dropped silently)"
  exit 1
fi
if ! grep -q "pybind11 not found" "$work/on.log" || ! grep -q "UCP_BUILD_PYTHON=OFF" "$work/on.log"; then
  echo "FAIL: configure failed without naming pybind11 and -DUCP_BUILD_PYTHON=OFF:"
  cat "$work/on.log"
  exit 1
fi
if ! "$cmake_bin" -S "$src" -B "$work/off" -G Ninja -DCMAKE_DISABLE_FIND_PACKAGE_pybind11=TRUE \
    -DUCP_BUILD_PYTHON=OFF >"$work/off.log" 2>&1; then
  echo "FAIL: configure with UCP_BUILD_PYTHON=OFF failed:"
  cat "$work/off.log"
  exit 1
fi
echo "OK: configure fails without pybind11 and builds without the module when asked"
