"""Architectures side by side: `vae train mnist --arch A` for each A, same epochs and seed.

Runs the command lines shown in the table (through the `vae` CLI, as a user would), reads the
per-epoch metrics from each checkpoint and appends a table to benchmarks/RESULTS.md: test
negative ELBO after the same epochs, parameters, seconds per epoch.

    python benchmarks/architectures.py --data-dir ../shared/data --epochs 10
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def train(arch: str, args: argparse.Namespace, out: Path) -> tuple[str, dict]:
    command = [
        "vae",
        "train",
        "mnist",
        "--arch",
        arch,
        "--epochs",
        str(args.epochs),
        "--seed",
        str(args.seed),
        "--device",
        args.device,
        "--data-dir",
        args.data_dir,
        "--no-download",
    ]
    shown = shlex.join(command)
    subprocess.run(command + ["-o", str(out)], check=True, stdout=subprocess.DEVNULL)
    from vaecli.checkpoint import read

    ckpt = read(out)
    parameters = sum(t.numel() for t in ckpt.section("model.").values())
    return shown, {"metrics": ckpt.meta["metrics"], "parameters": parameters}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--archs", nargs="+", default=["mlp", "conv"])
    parser.add_argument("--no-write", action="store_true", help="Print the table only.")
    args = parser.parse_args()
    if not (Path(args.data_dir).expanduser() / "MNIST" / "raw").is_dir():
        sys.exit(f"no MNIST in {args.data_dir}/MNIST/raw; pass --data-dir")

    import torch

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs:
            command, result = train(arch, args, Path(tmp) / f"{arch}.safetensors")
            last = result["metrics"][-1]
            seconds = statistics.mean(m["seconds"] for m in result["metrics"])
            rows.append((arch, command, last, result["parameters"], seconds))
            print(
                f"{arch}: test -ELBO {last['test_nelbo']:.2f} after {last['epoch']} epochs, {seconds:.1f} s/epoch",
                flush=True,
            )

    machine = (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
        if args.device == "cpu"
        else args.device
    ) + f", torch {torch.__version__}"
    lines = [
        f"\n## Architectures on MNIST, {args.epochs} epochs, seed {args.seed} ({machine})\n",
        "| arch | test -ELBO (nats) | recon | KL | parameters | s/epoch | command |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for arch, command, last, parameters, seconds in rows:
        lines.append(
            f"| {arch} | {last['test_nelbo']:.2f} | {last['test_recon']:.2f} | {last['test_kl']:.2f} | "
            f"{parameters:,} | {seconds:.1f} | `{command}` |"
        )
    lines.append(
        f"\nCommand: `python benchmarks/architectures.py --data-dir {args.data_dir} --epochs {args.epochs}"
        f" --device {args.device}`. Default options of each architecture (mlp: one hidden layer of 400;"
        f" conv: channels 32,64 and a hidden layer of 256), Bernoulli likelihood on grey levels,"
        f" latent 20, batch 128, Adam 1e-3; the test -ELBO uses one posterior sample, as in training."
    )
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
            f.write(text)


if __name__ == "__main__":
    main()
