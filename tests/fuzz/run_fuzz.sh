#!/bin/sh
# Fuzz the model file loader for MINUTES minutes with libFuzzer + ASan/UBSan.
#   tests/fuzz/run_fuzz.sh MINUTES [BUILD_DIR]
# FUZZ_TARGET=fuzz_onnx fuzzes the ONNX importer instead (corpus_onnx, the
# hostile catalogue and the models of tests/onnx as seeds);
# FUZZ_TARGET=fuzz_safetensors fuzzes the safetensors loaders and the
# memory-mapped model loader (corpus_safetensors, the safetensors catalogue
# and the model-file corpus as seeds).
# Builds with clang-14 in its own build dir (default build-fuzz), starts from
# a copy of the committed corpus and the malformed catalogue, and leaves new
# inputs in BUILD_DIR/fuzz-corpus[-TARGET] and any crash in BUILD_DIR/fuzz-artifacts.
# -malloc_limit_mb flags any single allocation larger than a 64 KiB input
# can justify (its 1032:1 zlib ratio included).
set -eu
minutes=${1:?usage: run_fuzz.sh MINUTES [BUILD_DIR]}
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${2:-$src/build-fuzz}
cc=${CC:-clang-14}
if [ ! -d "$build" ]; then
  CC=$cc meson setup "$build" "$src" -Dfuzzing=true -Dbuildtype=debugoptimized \
    -Db_sanitize=address,undefined -Db_lundef=false -Dexamples=false -Dpython=disabled \
    -Dc_args='-fsanitize=fuzzer-no-link -fno-sanitize-recover=undefined -fno-omit-frame-pointer'
fi
target=${FUZZ_TARGET:-fuzz_load}
ninja -C "$build" "tests/fuzz/$target"
case $target in
  fuzz_onnx)
    corpus=$build/fuzz-corpus-onnx
    mkdir -p "$corpus"
    cp "$src"/tests/fuzz/corpus_onnx/* "$src"/tests/onnx/hostile/*.onnx \
      "$src"/tests/onnx/models/*.onnx "$corpus/" ;;
  fuzz_safetensors)
    corpus=$build/fuzz-corpus-safetensors
    mkdir -p "$corpus"
    cp "$src"/tests/fuzz/corpus_safetensors/* "$src"/tests/io/safetensors/malformed/*.safetensors \
      "$src"/tests/fuzz/corpus/*.nnm "$corpus/" ;;
  *)
    corpus=$build/fuzz-corpus
    mkdir -p "$corpus"
    cp "$src"/tests/fuzz/corpus/* "$src"/tests/io/malformed/*.nnm "$corpus/" ;;
esac
mkdir -p "$build/fuzz-artifacts"
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
exec "$build/tests/fuzz/$target" "$corpus" \
  -max_total_time=$((minutes * 60)) -max_len=65536 -malloc_limit_mb=80 -rss_limit_mb=2048 \
  -timeout=10 -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/"
