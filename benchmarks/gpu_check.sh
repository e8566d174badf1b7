#!/usr/bin/env bash
# The GPU checks in one go, for a machine with an NVIDIA GPU (CI has none):
#   1. the test suite's CUDA cases (those that skip without a GPU);
#   2. `vae train mnist --device cuda` in bf16 and in fp32, 3 epochs each, with the seconds of
#      each epoch (the data resident on the GPU, no host synchronisation per step);
#   3. resume on the GPU: 2 epochs, then --resume to 3, against an uninterrupted 3-epoch run;
#   4. two processes with DistributedDataParallel over NCCL, where two GPUs exist.
# It prints one line per check and ends with the seconds per MNIST epoch.
#
#   bash benchmarks/gpu_check.sh ../shared/data
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'bf16', torch.cuda.is_bf16_supported())"

epochs() {  # the seconds and test losses of each epoch of a checkpoint
    python - "$1" <<'EOF'
import sys, vaecli
for m in vaecli.metadata(sys.argv[1])["metrics"]:
    print(f"  epoch {m['epoch']}: {m['seconds']:.3f} s  test -ELBO {m['test_nelbo']:.3f}")
EOF
}

echo "== 1. the CUDA tests"
python -m pytest -q tests -k "cuda or gpu" -rs

for precision in bf16 fp32; do
    echo "== 2. vae train mnist --device cuda --precision $precision --epochs 3"
    vae train mnist --device cuda --precision "$precision" --epochs 3 --data-dir "$DATA" --no-download \
        -o "$OUT/$precision.safetensors" --force
    epochs "$OUT/$precision.safetensors"
done

echo "== 3. resume on the GPU: 2 epochs, then --resume to 3 (the uninterrupted run is bf16 above)"
vae train mnist --device cuda --precision bf16 --epochs 2 --data-dir "$DATA" --no-download \
    -o "$OUT/resumed.safetensors" --force
vae train --resume "$OUT/resumed.safetensors" --epochs 3
epochs "$OUT/resumed.safetensors"

gpus=$(nvidia-smi -L | wc -l)
if [ "$gpus" -ge 2 ]; then
    echo "== 4. two processes, DistributedDataParallel over NCCL"
    vae train mnist --device cuda --epochs 2 --nproc 2 --data-dir "$DATA" --no-download \
        -o "$OUT/ddp.safetensors" --force
    epochs "$OUT/ddp.safetensors"
else
    echo "== 4. skipped: one GPU ($gpus found); DDP over NCCL needs two"
fi

echo "== seconds per MNIST epoch (784-400-20 MLP, batch 128; goal: under 0.05 s on an H100-class GPU)"
python - "$OUT" <<'EOF'
import statistics, sys, vaecli
for precision in ("bf16", "fp32"):
    seconds = [m["seconds"] for m in vaecli.metadata(f"{sys.argv[1]}/{precision}.safetensors")["metrics"]]
    print(f"  {precision}: {statistics.median(seconds[1:]):.3f} s (epochs 2-3; the first, with warm-up: {seconds[0]:.3f} s)")
EOF
