"""Inference speed: `vae evaluate --iw-samples 5000` on the MNIST test set, `vae encode` of the
60,000 training images, and the start-up time of `vae --help` and `vae plugins`.

Each command runs as a user runs it, in its own process; the table gives its wall time and,
for evaluate, the evaluation alone (the "seconds" of its --json). Without --ckpt the default
model is trained first (5 epochs).

    python benchmarks/inference.py --data-dir ../shared/data [--device cuda] [--write]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from train_speed import machine, write_section  # noqa: E402


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return seconds, out.stdout


def startup(repeats: int) -> list[str]:
    rows = []
    for args in (["--help"], ["plugins"]):
        times = sorted(timed(["vae", *args])[0] for _ in range(repeats))
        code = (
            "import sys, io, contextlib\nfrom vaecli.cli import app\nwith contextlib.redirect_stdout(io.StringIO()):\n"
            f"    try: app({args!r})\n    except SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'torchvision', 'matplotlib', 'numpy') if m in sys.modules))"
        )
        loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()
        rows.append(f"| `vae {' '.join(args)}` | {statistics.median(times):.3f} | {times[0]:.3f} | {loaded} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--ckpt", help="a checkpoint of MNIST (default: train the default model 5 epochs)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iw-samples", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=15, help="runs of each start-up command")
    parser.add_argument("--write", action="store_true", help="put the table into benchmarks/RESULTS.md")
    args = parser.parse_args()
    data = ["--data-dir", args.data_dir, "--no-download", "--device", args.device]
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.ckpt
        if ckpt is None:
            ckpt = str(Path(tmp) / "mnist.safetensors")
            seconds, _ = timed(["vae", "train", "mnist", "--epochs", "5", "-o", ckpt, *data])
            print(f"trained the default model, 5 epochs, in {seconds:.1f} s", flush=True)
        rows = []
        wall, stdout = timed(
            ["vae", "evaluate", ckpt, "mnist:test", "--iw-samples", str(args.iw_samples), "--json", *data]
        )
        result = json.loads(stdout)
        rows.append(
            f"| `vae evaluate CKPT mnist:test --iw-samples {args.iw_samples}` | {result['examples']:,} images "
            f"x {args.iw_samples} samples | {wall:.1f} | {result['seconds']:.1f} | NLL {result['nll']:.2f} nats |"
        )
        print(rows[-1], flush=True)
        wall, stdout = timed(["vae", "encode", ckpt, "mnist:train", "-o", str(Path(tmp) / "z.npy"), *data])
        rows.append(f"| `vae encode CKPT mnist:train -o z.npy` | 60,000 images | {wall:.1f} | | {stdout.strip()} |")
        print(rows[-1], flush=True)
    lines = [
        f"Machine: {machine(args.device)}.",
        "",
        "| command | work | wall s (whole process) | s of the work itself | result |",
        "| --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"Start-up, {args.repeats} runs each (the console script, as a user types it):",
        "",
        "| command | median s | fastest s | heavy modules imported |",
        "| --- | --- | --- | --- |",
        *startup(args.repeats),
        "",
        f"Command: `python benchmarks/inference.py --data-dir DIR --device {args.device}`.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        write_section(f"## Inference and start-up on {'GPU' if args.device.startswith('cuda') else 'CPU'}", text)


if __name__ == "__main__":
    main()
