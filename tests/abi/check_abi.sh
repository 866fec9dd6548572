#!/bin/sh
# Compare libnn.so's ABI with the committed baseline (abigail-tools).
# Any non-zero abidiff status fails (it returns bit flags, not only 8).
# Regenerate deliberately with: check_abi.sh LIB BASELINE HEADERDIR --update
set -eu
lib=$1
base=$2
hdr=$3
command -v abidiff >/dev/null 2>&1 || { echo "abidiff not installed: skipping"; exit 77; }
if [ "${4:-}" = "--update" ]; then
    abidw --headers-dir "$hdr" --out-file "$base" "$lib"
    echo "updated $base"
    exit 0
fi
[ -f "$base" ] || { echo "no baseline $base: skipping"; exit 77; }
abidiff --headers-dir2 "$hdr" "$base" "$lib"
echo "ABI matches $base"
