#!/bin/sh
# Smoke test of char_gpt and generate: train a tiny byte-level GPT for a few
# steps on the fortunes corpus (exit 77, skipped, when it is absent), then
# load the saved model and generate on two threads.
# usage: char_gpt_smoke.sh CHAR_GPT GENERATE MODEL_PATH
set -eu
char_gpt=$1 generate=$2 model=$3
NN_EXAMPLE_SMOKE=1 "$char_gpt" --threads 1 --save "$model" || exit $?
"$generate" "$model" "Q: " --threads 2 --tokens 20
