#!/usr/bin/env bash
# The GPU checks in one go: the one script a person with an NVIDIA GPU runs (CI has none).
#   1. the tests that stand in for the GPU (tests/test_cuda_review.py, tests/test_seeds.py) and the
#      suite's CUDA cases (those that skip without a GPU);
#   2. `vae train` for 3 epochs in bf16, fp16 and fp32, with the seconds of each epoch;
#   3. resume: 2 epochs, then --resume to 3, against the uninterrupted 3 epochs, bit for bit;
#   4. the explorer's draw from a fitted sampler (gmm) with the model on the device;
#   5. a compiled run (--compile) where the eager epoch is above 0.05 s;
#   6. two processes with DistributedDataParallel over NCCL, where two GPUs exist.
# Without CUDA it runs what the CPU can (1, 3 and 4 on the CPU) and says what it skipped. It ends
# with one table. MNIST when DATA holds it (torchvision's layout), else the built-in shapes.
#
#   bash benchmarks/gpu_check.sh [DATA]        # e.g. ../shared/data
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
TABLE="$OUT/table.txt"
row() { printf '| %s | %s |\n' "$1" "$2" >>"$TABLE"; echo "-- $1: $2"; }

if python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    DEVICE=cuda
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
else
    DEVICE=cpu
    echo "no CUDA GPU here: the checks the CPU can make run on it; the others are skipped, saying so"
fi
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
if [ -f "$DATA/MNIST/raw/train-images-idx3-ubyte" ] || [ -f "$DATA/MNIST/raw/train-images-idx3-ubyte.gz" ]; then
    SET=(mnist --data-dir "$DATA" --no-download)
else
    SET=(shapes)
fi
echo "data: ${SET[0]}"

echo "== 1. the tests"
if python -m pytest -q tests/test_cuda_review.py tests/test_seeds.py -k "not explore" -p no:randomly >"$OUT/t1.log" 2>&1; then
    row "tests standing in for the GPU" "$(tail -1 "$OUT/t1.log")"
else
    row "tests standing in for the GPU" "FAILED: $(tail -1 "$OUT/t1.log")"
fi
if [ "$DEVICE" = cuda ]; then
    python -m pytest -q tests -k "cuda or gpu" -rs >"$OUT/t2.log" 2>&1 && r=passed || r=FAILED
    row "the suite's CUDA cases" "$r: $(tail -1 "$OUT/t2.log")"
else
    row "the suite's CUDA cases" "skipped: no CUDA GPU"
fi

seconds() {  # the median seconds of epochs 2-3 of a checkpoint
    python - "$1" <<'EOF'
import statistics, sys, vaecli
s = [m["seconds"] for m in vaecli.metadata(sys.argv[1])["metrics"]]
print(f"{statistics.median(s[1:]):.3f} s an epoch (first, with warm-up: {s[0]:.3f} s)")
EOF
}

echo "== 2. epochs by precision"
EAGER=""
for precision in bf16 fp16 fp32; do
    if [ "$DEVICE" = cpu ]; then
        row "train, $precision" "skipped: no CUDA GPU (CPU speed: benchmarks/train_speed.py)"
        continue
    fi
    if vae train "${SET[@]}" --device cuda --precision "$precision" --epochs 3 -o "$OUT/$precision.safetensors" --force >"$OUT/$precision.log" 2>&1; then
        row "train, $precision" "$(seconds "$OUT/$precision.safetensors")"
        [ "$precision" = bf16 ] && EAGER=$(python -c "import statistics, vaecli; print(statistics.median(m['seconds'] for m in vaecli.metadata('$OUT/bf16.safetensors')['metrics'][1:]))")
    else
        row "train, $precision" "FAILED: $(tail -1 "$OUT/$precision.log")"
    fi
done

echo "== 3. resume, bit for bit"
SMALL=("${SET[@]}")
[ "$DEVICE" = cpu ] && SMALL=(shapes --data-option n_train=2000 --data-option n_test=500)
vae train "${SMALL[@]}" --device "$DEVICE" --epochs 3 -o "$OUT/straight.safetensors" --force >/dev/null 2>&1
vae train "${SMALL[@]}" --device "$DEVICE" --epochs 2 -o "$OUT/resumed.safetensors" --force >/dev/null 2>&1
vae train --resume "$OUT/resumed.safetensors" --epochs 3 >/dev/null 2>&1
row "resume on $DEVICE" "$(python - "$OUT/straight.safetensors" "$OUT/resumed.safetensors" <<'EOF'
import sys, torch
from safetensors.torch import load_file
a, b = (load_file(p) for p in sys.argv[1:])
same = all(torch.equal(a[k], b[k]) for k in a if k.startswith("model."))
print("bit-identical weights" if same else "FAILED: the weights differ")
EOF
)"

echo "== 4. the explorer's draw from a fitted sampler"
vae sample "$OUT/straight.safetensors" --sampler gmm -n 4 -o "$OUT/gmm.png" --device "$DEVICE" >/dev/null 2>&1
row "explorer draw (gmm) on $DEVICE" "$(python - "$OUT/straight.safetensors" "$DEVICE" <<'EOF'
import sys
from pathlib import Path
from vaecli import api, inputs
from vaecli.explorer import Explorer
model = api.load(sys.argv[1], sys.argv[2])
found = inputs.load_input("shapes:test", model.meta, limit=8) if model.meta["data"]["dataset"]["name"] == "shapes" else None
try:
    z = Explorer(model, Path(sys.argv[1]), found).draw({"sampler": "gmm", "seed": 1})["z"]
    print(f"a code of {len(z)} dimensions")
except Exception as exc:
    print(f"FAILED: {type(exc).__name__}: {exc}")
EOF
)"

echo "== 5. compiled"
if [ "$DEVICE" = cpu ]; then
    row "train, bf16, --compile" "skipped: no CUDA GPU"
elif [ -n "$EAGER" ] && python -c "import sys; sys.exit(0 if float('$EAGER') > 0.05 else 1)"; then
    if vae train "${SET[@]}" --device cuda --precision bf16 --compile --epochs 3 -o "$OUT/compiled.safetensors" --force >"$OUT/c.log" 2>&1; then
        row "train, bf16, --compile" "$(seconds "$OUT/compiled.safetensors")"
    else
        row "train, bf16, --compile" "FAILED: $(tail -1 "$OUT/c.log")"
    fi
else
    row "train, bf16, --compile" "skipped: the eager epoch is ${EAGER:-?} s, not above 0.05 s"
fi

echo "== 6. two processes over NCCL"
gpus=$( [ "$DEVICE" = cuda ] && nvidia-smi -L | wc -l || echo 0)
if [ "$gpus" -ge 2 ]; then
    vae train "${SET[@]}" --device cuda --epochs 2 --nproc 2 -o "$OUT/ddp.safetensors" --force >"$OUT/ddp.log" 2>&1 \
        && row "DDP, 2 GPUs, NCCL" "$(seconds "$OUT/ddp.safetensors")" || row "DDP, 2 GPUs, NCCL" "FAILED: $(tail -1 "$OUT/ddp.log")"
else
    row "DDP, 2 GPUs, NCCL" "skipped: $gpus GPU(s); it needs two"
fi

echo
echo "| check | result |"
echo "| --- | --- |"
cat "$TABLE"
! grep -q FAILED "$TABLE"
