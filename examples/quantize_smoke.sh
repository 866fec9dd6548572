#!/bin/sh
# Smoke test of examples/quantize.c: train a tiny f32 model with
# fashion_mnist_cnn, quantize it (dynamic and static, report, accuracy,
# size, latency), save the int8 model, and classify with it through
# embed_inference unchanged.
# usage: quantize_smoke.sh FASHION_MNIST_CNN QUANTIZE EMBED_INFERENCE DATA_DIR OUT_PREFIX
set -eu
cnn=$1 quant=$2 embed=$3 data=$4 out=$5
NN_EXAMPLE_SMOKE=1 "$cnn" --data "$data" --subset 1000 --test-subset 100 --threads 1 \
    --save "$out.nnm" >/dev/null 2>&1
NN_EXAMPLE_SMOKE=1 "$quant" --model "$out.nnm" --data "$data" --save "$out-int8.nnm"
"$embed" "$out-int8.nnm" "$data/t10k-images-idx3-ubyte.gz" "$data/t10k-labels-idx1-ubyte.gz" \
    | tail -3
