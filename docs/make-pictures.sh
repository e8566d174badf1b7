#!/usr/bin/env bash
# Remakes the pictures in README.md from a real MNIST run, with `vae` itself.
#
#   bash docs/make-pictures.sh [DATA_DIR]     # DATA_DIR holds MNIST/raw (default: ../shared/data)
#
# About 3 minutes on a 2-core laptop CPU. Checkpoints go to a temporary folder; the pictures to
# docs/images/.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${1:-../shared/data}"
OUT=docs/images
RUN="$(mktemp -d)"
trap 'rm -rf "$RUN"' EXIT
mkdir -p "$OUT"

# The default model (784-400-20, Bernoulli) for 10 epochs, with pictures of every epoch.
vae train mnist --data-dir "$DATA" --no-download --epochs 10 -o "$RUN/mnist.safetensors" \
    --viz-dir "$RUN/viz" --device cpu
cp "$RUN/viz/training.gif" "$OUT/training.gif"

vae sample "$RUN/mnist.safetensors" -n 64 -o "$OUT/samples.png"
vae reconstruct "$RUN/mnist.safetensors" mnist:test -n 16 -o "$OUT/reconstructions.png"
vae interpolate "$RUN/mnist.safetensors" mnist:test mnist:train --pairs 4 --steps 10 -o "$OUT/interpolation.gif"
vae plot-latent "$RUN/mnist.safetensors" mnist:test --traverse -o "$OUT/traverse.png"
vae evaluate "$RUN/mnist.safetensors" mnist:test --iw-samples 100

# A 2-D latent space, to see directly: the scatter and the learned manifold.
vae train mnist --data-dir "$DATA" --no-download --epochs 10 --latent-dim 2 -o "$RUN/mnist-2d.safetensors" --device cpu
vae plot-latent "$RUN/mnist-2d.safetensors" mnist:test -o "$OUT/latent.png"
vae plot-latent "$RUN/mnist-2d.safetensors" --manifold -o "$OUT/manifold.png"
# A regularised auto-encoder: its codes are not N(0, I), so a density fitted to them draws better.
vae train mnist --data-dir "$DATA" --no-download --epochs 3 --model rae-l2 --latent-dim 16 -o "$RUN/rae.safetensors" --device cpu
vae sample "$RUN/rae.safetensors" -n 36 -o "$OUT/rae-prior.png"
vae sample "$RUN/rae.safetensors" -n 36 --sampler gmm -o "$OUT/rae-gmm.png"

# Rows: the census-like table of benchmarks/tables_side_by_side.py (made here, no download),
# 100 epochs, then 20,000 synthetic rows drawn against the training rows.
python -c "import sys; sys.path.insert(0, 'benchmarks'); from pathlib import Path; \
from tables_side_by_side import make_census; make_census(Path('$RUN'))"
vae train "table:$RUN/train.csv" --dataset-option "test=$RUN/test.csv" --dataset-option label=income \
    --recipe tabular -e 100 -o "$RUN/census.safetensors" --data-dir "$RUN" --device cpu
vae sample "$RUN/census.safetensors" -n 20000 -o "$RUN/synthetic.csv" --plot "$OUT/table-samples.png"
vae evaluate "$RUN/census.safetensors" --iw-samples 100
ls -l "$OUT"
