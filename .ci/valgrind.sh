#!/usr/bin/env bash
# The C test suites under valgrind memcheck: no errors, no definite or
# possible leaks (two documented third-party suppressions in valgrind.supp).
# The examples, the Python tests and the MPI runs are left out for time
# (the examples train real models; valgrind makes that minutes each), and so
# is the install suite (it runs pkg-config, compilers and meson itself), and
# the layers check (a Python script reading the sources and nm's output).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
command -v valgrind >/dev/null || { echo "valgrind not installed: skipping"; exit 0; }
meson test -C "$dir" --no-suite bench --no-suite python --no-suite abi --no-suite dist \
    --no-suite examples --no-suite install --no-suite layers \
    --timeout-multiplier 10 --print-errorlogs \
    --wrap="valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,possible --suppressions=$PWD/.ci/valgrind.supp"
