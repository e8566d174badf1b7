"""The default `vae train mnist` against the classic PyTorch MNIST VAE example, side by side.

The conventional script below is the PyTorch example (github.com/pytorch/examples, vae/main.py)
as people copy it: torchvision's MNIST Dataset, DataLoader(ToTensor()), a 784-400-20 VAE, summed
BCE + KL, Adam 1e-3, batch 128, a test pass each epoch (one sampled z, as the example does).

    python benchmarks/classic_mnist.py --data-dir ../shared/data --epochs 10 --seeds 1 2 3

prints a table of test negative ELBO (nats per example) and seconds per epoch for both, and
appends it to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class ClassicVAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def forward(self, x):
        h = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def classic_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def run_classic(data_dir: str, epochs: int, seed: int) -> tuple[float, float]:
    from torchvision import datasets, transforms

    torch.manual_seed(seed)
    train_loader = torch.utils.data.DataLoader(
        datasets.MNIST(data_dir, train=True, download=False, transform=transforms.ToTensor()),
        batch_size=128,
        shuffle=True,
    )
    test_loader = torch.utils.data.DataLoader(
        datasets.MNIST(data_dir, train=False, transform=transforms.ToTensor()), batch_size=128, shuffle=False
    )
    model = ClassicVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    seconds = []
    for _ in range(epochs):
        model.train()
        start = time.perf_counter()
        for data, _ in train_loader:
            opt.zero_grad()
            recon, mu, logvar = model(data)
            loss = classic_loss(recon, data, mu, logvar)
            loss.backward()
            opt.step()
        seconds.append(time.perf_counter() - start)
        model.eval()
        test_nelbo = 0.0
        with torch.no_grad():
            for data, _ in test_loader:
                recon, mu, logvar = model(data)
                test_nelbo += classic_loss(recon, data, mu, logvar).item()
        test_nelbo /= len(test_loader.dataset)
    return test_nelbo, statistics.mean(seconds)


def run_vae(data_dir: str, epochs: int, seed: int) -> tuple[float, float]:
    import vaecli

    with tempfile.TemporaryDirectory() as tmp:
        result = vaecli.train(
            dataset="mnist",
            data_dir=data_dir,
            download=False,
            epochs=epochs,
            seed=seed,
            device="cpu",
            out=str(Path(tmp) / "m.safetensors"),
        )
    return result.metrics[-1]["test_nelbo"], statistics.mean(m["seconds"] for m in result.metrics)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--skip-classic", action="store_true")
    args = parser.parse_args()

    rows = []
    for seed in args.seeds:
        v_loss, v_sec = run_vae(args.data_dir, args.epochs, seed)
        rows.append(("vae train mnist", seed, v_loss, v_sec))
        print(f"vae      seed {seed}: test -ELBO {v_loss:.2f}  {v_sec:.2f} s/epoch", flush=True)
        if not args.skip_classic:
            c_loss, c_sec = run_classic(args.data_dir, args.epochs, seed)
            rows.append(("PyTorch example", seed, c_loss, c_sec))
            print(f"classic  seed {seed}: test -ELBO {c_loss:.2f}  {c_sec:.2f} s/epoch", flush=True)

    machine = (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    lines = [
        f"\n## Default model vs the PyTorch example, MNIST, {args.epochs} epochs, CPU ({machine})\n",
        "| run | seed | test -ELBO (nats) | s/epoch |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {name} | {seed} | {loss:.2f} | {sec:.2f} |" for name, seed, loss, sec in rows]
    for name in ("vae train mnist", "PyTorch example"):
        losses = [r[2] for r in rows if r[0] == name]
        if losses:
            lines.append(f"| {name}, mean | | {statistics.mean(losses):.2f} | |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(Path(__file__).with_name("RESULTS.md"), "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()
