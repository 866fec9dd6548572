#!/bin/sh
# Exported dynamic symbols of libnn.so must equal the committed list
# (tests/abi/symbols.txt): an accidental export or removal fails the suite.
# Regenerate deliberately with: check_symbols.sh LIB LIST --update
set -eu
lib=$1
list=$2
command -v nm >/dev/null 2>&1 || { echo "nm not found: skipping"; exit 77; }
actual=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sed 's/@.*//' | LC_ALL=C sort -u)
if [ "${3:-}" = "--update" ]; then
    printf '%s\n' "$actual" > "$list"
    echo "updated $list"
    exit 0
fi
stray=$(printf '%s\n' "$actual" | grep -v '^nn_[a-z]' || true)
if [ -n "$stray" ]; then
    echo "exported symbols outside the nn_ API:"; echo "$stray"; exit 1
fi
if ! diff -u "$list" - <<EOT
$actual
EOT
then
    echo "exported symbols differ from $list (lines with + are new exports, - are removed)"
    exit 1
fi
echo "$(printf '%s\n' "$actual" | wc -l) exported symbols match $list"
