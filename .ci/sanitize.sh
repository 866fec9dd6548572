#!/usr/bin/env bash
# The whole C test suite under AddressSanitizer + UndefinedBehaviorSanitizer
# (meson's b_sanitize), excluding the benchmark, the ABI checks and the
# install suite (it links plain programs against the instrumented libnn.so,
# which cannot run without the sanitizer runtime first). Any report fails. MPI is
# off here: Open MPI's dlopened plugins leak at exit in ways LSan cannot
# attribute; the dist suite still runs, as a world of one.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-asan}
if [ ! -d "$dir" ]; then
    meson setup "$dir" -Db_sanitize=address,undefined -Db_lundef=false -Dpython=disabled -Dmpi=disabled >/dev/null
fi
ninja -C "$dir"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=suppressions=$PWD/.ci/lsan.supp:print_suppressions=0
meson test -C "$dir" --no-suite bench --no-suite abi --no-suite install --print-errorlogs
