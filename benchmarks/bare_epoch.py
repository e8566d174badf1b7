"""`vae train`'s epoch against the bare arithmetic of the same model, and the arithmetic's floor.

- **bare**: the default model's work and nothing else, written in plain PyTorch: the 784-400-20
  MLP's forward, the Bernoulli negative ELBO (one sample, KL in closed form), backward and a fused
  Adam step, over MNIST already resident as floats in [0, 1], batch 128, in a random order; under
  bf16 autocast (``auto`` on a CPU with AVX512-BF16) or in fp32.
- **vae train**: ``vaecli.train(dataset="mnist")`` with the same settings; its epoch as the
  metrics record it (the batches, the test pass of 10,000 images, the checkpoint write), and the
  test pass alone (``vaecli.evaluation.test_pass``), timed on the trained model.
- **floor**: the epoch's matrix products (6 per layer and example: forward, and two for
  backward) over the matmul throughput measured at the model's shapes and precision.

- **tiny**: both loops again with a hidden layer of 4 and 2 latent dimensions, in milliseconds
  per step: the cost of Python, dispatch and the 784-pixel elementwise work, without products.

Each figure is the median over ``--epochs`` epochs after one warm-up epoch.

    python benchmarks/bare_epoch.py --data-dir ../shared/data --write
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TITLE = "## The epoch against the bare arithmetic, CPU"
LAYERS = [(784, 400), (400, 40), (20, 400), (400, 784)]  # the default mlp: encoder, (mean, logvar), decoder
BATCH = 128


def mnist(data_dir: str) -> tuple[torch.Tensor, torch.Tensor]:
    from vaecli.data import load_dataset

    splits = load_dataset("mnist", {}, data_dir, False).splits
    return splits.train.images, splits.test.images


def bare_epochs(
    train_u8: torch.Tensor, precision: str, epochs: int, hidden: int = 400, latent: int = 20
) -> list[float]:
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
    dec = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, 784))
    params = [*enc.parameters(), *dec.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3, fused=True)
    x_all = train_u8.reshape(len(train_u8), 784).float() / 255
    times = []
    for _ in range(epochs + 1):
        start = time.perf_counter()
        for idx in torch.randperm(len(x_all)).split(BATCH):
            x = x_all[idx]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                mean, logvar = enc(x).float().chunk(2, dim=1)
                z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
                logits = dec(z).float()
            recon = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
            kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(1)
            loss = (recon + kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    return times[1:]


def matmul_floor(n_train: int, precision: str) -> tuple[float, float]:
    """(seconds of an epoch's matrix products at the measured throughput, GFLOP/s measured)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    flops = 0.0
    seconds = 0.0
    for fan_in, fan_out in LAYERS:
        a = torch.randn(BATCH, fan_in, dtype=dtype)
        w = torch.randn(fan_out, fan_in, dtype=dtype)
        g = torch.randn(BATCH, fan_out, dtype=dtype)
        for _ in range(20):  # warm-up
            a @ w.T
        reps = 200
        start = time.perf_counter()
        for _ in range(reps):
            a @ w.T  # forward
            g @ w  # gradient of the input
            g.T @ a  # gradient of the weight
        per = (time.perf_counter() - start) / reps
        steps = -(-n_train // BATCH)
        seconds += per * steps
        flops += 6 * BATCH * fan_in * fan_out * steps
    return seconds, flops / seconds / 1e9


def vae_epochs(
    data_dir: str, precision: str, epochs: int, test_u8: torch.Tensor, hidden: int = 400, latent: int = 20
) -> tuple[list[float], float]:
    import vaecli
    from vaecli.evaluation import test_pass

    with tempfile.TemporaryDirectory() as tmp:
        result = vaecli.train(
            dataset="mnist",
            data_dir=data_dir,
            download=False,
            epochs=epochs + 1,
            precision=precision,
            arch_options={"hidden": (hidden,)},
            latent_dim=latent,
            device="cpu",
            out=str(Path(tmp) / "m.safetensors"),
        )
        metrics = vaecli.metadata(result.path)["metrics"]
        model = vaecli.load(result.path)
    passes = []
    for _ in range(3):
        start = time.perf_counter()
        test_pass(model, test_u8)
        passes.append(time.perf_counter() - start)
    return [m["seconds"] for m in metrics[1:]], statistics.median(passes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--precision", nargs="+", default=["auto", "fp32"], choices=("auto", "fp32"))
    parser.add_argument("--write", action="store_true", help="rewrite the section of RESULTS.md")
    args = parser.parse_args()
    from train_speed import machine, publish

    from vaecli.training.precision import resolve_precision

    train_u8, test_u8 = mnist(args.data_dir)
    lines = [
        f"Machine: {machine('cpu')}. The default model (784-400-20 MLP, batch 128, Adam 1e-3) on the "
        f"60,000 MNIST training images; median of {args.epochs} epochs after a warm-up epoch.",
        "",
        "| precision | floor: matmuls at measured GFLOP/s | bare PyTorch epoch | vae train epoch (with test pass and save) | vae / bare | test pass | test pass / epoch |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for precision in args.precision:
        arith = resolve_precision(precision, torch.device("cpu"))
        floor, gflops = matmul_floor(len(train_u8), arith)
        bare = statistics.median(bare_epochs(train_u8, arith, args.epochs))
        ours, test_s = vae_epochs(args.data_dir, precision, args.epochs, test_u8)
        epoch = statistics.median(ours)
        lines.append(
            f"| {precision} ({arith}) | {floor:.2f} s ({gflops:.0f} GFLOP/s) | {bare:.2f} s | {epoch:.2f} s | "
            f"{epoch / bare:.2f}x | {test_s:.2f} s | {test_s / epoch:.2f} |"
        )
        print(lines[-1], flush=True)
    lines += [
        "",
        "The same two loops with a hidden layer of 4 units and 2 latent dimensions instead of 400 and 20 "
        "(the matrix products nearly vanish; the 784-pixel likelihood stays): milliseconds per step, "
        "what Python, dispatch and the elementwise work cost whatever the layer sizes.",
        "",
        "| precision | bare PyTorch step | vae train step | vae - bare |",
        "| --- | ---: | ---: | ---: |",
    ]
    steps = -(-len(train_u8) // BATCH)
    for precision in args.precision:
        arith = resolve_precision(precision, torch.device("cpu"))
        bare = statistics.median(bare_epochs(train_u8, arith, args.epochs, hidden=4, latent=2)) / steps * 1e3
        ours = statistics.median(vae_epochs(args.data_dir, precision, args.epochs, test_u8, hidden=4, latent=2)[0])
        ours = ours / steps * 1e3
        lines.append(f"| {precision} ({arith}) | {bare:.2f} ms | {ours:.2f} ms | {ours - bare:+.2f} ms |")
        print(lines[-1], flush=True)
    lines += ["", f"Command: `python benchmarks/bare_epoch.py --data-dir DIR --epochs {args.epochs}`."]
    publish(TITLE, lines, args.write)


if __name__ == "__main__":
    main()
