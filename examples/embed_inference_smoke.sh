#!/bin/sh
# Smoke test of embed_inference: train a tiny model with fashion_mnist_cnn,
# then load it and classify the Fashion-MNIST test images.
# usage: embed_inference_smoke.sh FASHION_MNIST_CNN EMBED_INFERENCE DATA_DIR MODEL_PATH
set -eu
cnn=$1 embed=$2 data=$3 model=$4
NN_EXAMPLE_SMOKE=1 "$cnn" --data "$data" --subset 640 --test-subset 100 --threads 1 \
    --save "$model" >/dev/null 2>&1
"$embed" "$model" "$data/t10k-images-idx3-ubyte.gz" "$data/t10k-labels-idx1-ubyte.gz"
