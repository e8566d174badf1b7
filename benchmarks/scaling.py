"""How `vae train` grows: epoch time and peak memory against dataset size and batch size.

Datasets of N images are MNIST's training images repeated (and cut) to N, written as IDX files
into a temporary `--data-dir`, so every size is the same kind of data; the test split is MNIST's
10,000. Each run is its own process; memory is its peak resident size less what it holds once
torch is imported and an optimizer made (the same for every run), set against the dataset's
bytes (uint8, as vae keeps it).

    python benchmarks/scaling.py --data-dir ../shared/data [--device cuda] [--write]
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from train_speed import machine, vae, write_section  # noqa: E402

SIZES = (7500, 15000, 30000, 60000, 120000, 240000)
BATCHES = (32, 64, 128, 256, 512, 1024)


def write_idx(path: Path, data: bytes, sizes: tuple) -> None:
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, len(sizes)]) + struct.pack(f">{len(sizes)}I", *sizes))
        f.write(data)


def make_data(source: Path, n: int, target: Path) -> None:
    """``target``/MNIST/raw with n training images (MNIST's, repeated) and MNIST's test split."""
    raw = target / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = (source / "train-images-idx3-ubyte").read_bytes()[16:]
    labels = (source / "train-labels-idx1-ubyte").read_bytes()[8:]
    reps = -(-n // 60000)
    write_idx(raw / "train-images-idx3-ubyte", (images * reps)[: n * 784], (n, 28, 28))
    write_idx(raw / "train-labels-idx1-ubyte", (labels * reps)[:n], (n,))
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes((source / name).read_bytes())


def worker(data_dir: str, epochs: int, batch: int, device: str, precision: str) -> dict:
    """One run (train_speed's): the median training seconds of its epochs but the first."""
    r = vae(data_dir, epochs, seed=0, device=device, precision=precision, batch_size=batch)
    train_s = [e["train_s"] for e in r["epochs"]]
    return {
        "train_s": statistics.median(train_s[1:] or train_s),
        "test_nelbo": r["epochs"][-1]["test_nelbo"],
        **{k: v for k, v in r.items() if k != "epochs"},
    }


def launch(args, data_dir: str, batch: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--data-dir",
        data_dir,
        "--epochs",
        str(args.epochs),
        "--batch",
        str(batch),
        "--device",
        args.device,
        "--precision",
        args.precision,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        raise SystemExit(f"run failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def memory(r: dict, gpu: bool) -> str:
    return f"{r['gpu_peak_mb']:.0f}" if gpu else f"{r['peak_mb'] - r['baseline_mb']:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run; the first is left out of the time")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=list(BATCHES))
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--write", action="store_true", help="put the tables into benchmarks/RESULTS.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.data_dir, args.epochs, args.batch, args.device, args.precision)))
        return
    source = Path(args.data_dir) / "MNIST" / "raw"
    if not source.is_dir():
        raise SystemExit(f"no MNIST in {source}; pass --data-dir")
    gpu = args.device.startswith("cuda")
    unit = "GPU peak (MB)" if gpu else "peak memory over import (MB)"
    lines = [
        f"Machine: {machine(args.device)}; --precision {args.precision}; {args.epochs} epochs per run, "
        f"the first left out of the time. Training time only (the test pass is the same 10,000 images "
        f"for every size).",
        "",
        "### Against dataset size (batch 128)",
        "",
        f"| training images | dataset (MB, uint8) | s/epoch | microseconds per image | {unit} | memory less dataset (MB) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            folder = Path(tmp) / str(n)
            make_data(source, n, folder)
            r = launch(args, str(folder), args.batch)
            data_mb = (n + 10000) * 784 / 2**20
            rows.append((n, r))
            mem = float(memory(r, gpu))
            lines.append(
                f"| {n:,} | {data_mb:.1f} | {r['train_s']:.2f} | {r['train_s'] / n * 1e6:.1f} | {mem:.0f} | {mem - data_mb:.0f} |"
            )
            print(lines[-1], flush=True)
        if len(rows) > 1:  # least-squares slope of time and memory per image
            xs = [n for n, _ in rows]
            for what, ys in (
                ("seconds", [r["train_s"] for _, r in rows]),
                ("MB", [float(memory(r, gpu)) for _, r in rows]),
            ):
                mx, my = statistics.mean(xs), statistics.mean(ys)
                slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
                fit = [my + slope * (x - mx) for x in xs]
                ss = sum((y - f) ** 2 for y, f in zip(ys, fit)), sum((y - my) ** 2 for y in ys)
                r2 = 1 - ss[0] / ss[1] if ss[1] else 1.0
                per = f"{slope * 1e6:.1f} microseconds" if what == "seconds" else f"{slope * 2**20:.0f} bytes"
                lines.append("")
                lines.append(
                    f"Fitted line, {what}: {per} per training image, intercept {my - slope * mx:.2f}, R² {r2:.4f}."
                )
        lines += [
            "",
            "### Against batch size (60,000 images)",
            "",
            f"| batch | s/epoch | images/s | test -ELBO after {args.epochs} epochs | {unit} |",
            "| --- | --- | --- | --- | --- |",
        ]
        folder = Path(tmp) / "batches"
        make_data(source, 60000, folder)
        for b in args.batch_sizes:
            r = launch(args, str(folder), b)
            lines.append(
                f"| {b} | {r['train_s']:.2f} | {60000 / r['train_s']:,.0f} | {r['test_nelbo']:.2f} | {memory(r, gpu)} |"
            )
            print(lines[-1], flush=True)
    lines += [
        "",
        f"Command: `python benchmarks/scaling.py --data-dir DIR --device {args.device} --precision {args.precision}`.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        write_section(f"## Growth on {'GPU' if gpu else 'CPU'}: time and memory against dataset and batch size", text)


if __name__ == "__main__":
    main()
