#!/usr/bin/env bash
# Download the wheels the GPU machine lacks (it has torch 2.11, transformers 5.17, peft,
# accelerate, safetensors, tokenizers; no network, no pip index) into two sets that each fit
# one 64 MiB transfer, for the two steps of bench/gpu_check.py (docs/gpu.md).
#   step1: part hf (LoRA, QLoRA, eval): bitsandbytes, and omegaconf for harness.train.backends
#   step2: part unsloth: unsloth, unsloth_zoo, trl, datasets and their small pure-Python deps
# Wheels go under bench/results/wheels/ (git-ignored, so they travel only as `carry`).
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-.venv/bin/pip}
OUT=bench/results/wheels
LIMIT=$((64 * 1024 * 1024))
STEP1="bitsandbytes==0.50.2 omegaconf==2.3.0"
STEP2="unsloth==2026.10.9 unsloth_zoo==2026.10.9 trl==1.14.0 datasets==4.8.5 tyro cut_cross_entropy
  einops msgspec sentencepiece hf_transfer json5 structlog nest-asyncio typer shtab docstring-parser
  typeguard dill multiprocess xxhash fsspec"
for step in step1 step2; do
  list=STEP1; [ "$step" = step2 ] && list=STEP2
  rm -rf "$OUT/$step"; mkdir -p "$OUT/$step"
  # shellcheck disable=SC2086
  "$PIP" download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_34_x86_64 --platform any \
    -d "$OUT/$step" ${!list}
  # omegaconf's parser runtime is published as a source archive only: build its (pure) wheel
  [ "$step" = step1 ] && "$PIP" wheel --quiet --no-deps -w "$OUT/$step" antlr4-python3-runtime==4.9.3
  size=$(du -cb "$OUT/$step"/*.whl | tail -1 | cut -f1)
  echo "$step: $(ls "$OUT/$step" | wc -l) wheels, $((size / 1024 / 1024)) MiB"
  if [ "$size" -gt "$LIMIT" ]; then echo "$step is over one 64 MiB transfer" >&2; exit 1; fi
done
