"""An epoch on rows against a bare PyTorch loop of the same arithmetic.

50,000 rows of the 15-column census table of ``tables_side_by_side.py`` (numeric, skewed,
categorical, binary columns), the ``tabular`` recipe's model (inputs -> 128 -> 128 -> 2 x 32 and
back, batch 500, Adam). vae's epoch is ``seconds`` of its metrics log (the training steps of the
epoch, without the test pass); the bare loop is the same arithmetic written out in plain PyTorch
(one permutation, index_select of the batch, the same MLPs, the same per-type log-likelihood:
Gaussian over the numeric inputs with a learned scale, Bernoulli logits, a categorical per
column through one padded block, closed-form KL, Adam). Both in this process's threads, the same
model input tensor; each the median of its epochs after the first.

    python benchmarks/rows_epoch.py [--epochs 5]

Prints a table and writes benchmarks/rows_epoch.json.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent


def bare_epochs(x: torch.Tensor, layout, epochs: int, batch: int = 500, latent: int = 32) -> list:
    torch.manual_seed(0)
    f = x.shape[1]
    enc = nn.Sequential(nn.Linear(f, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2 * latent))
    dec = nn.Sequential(nn.Linear(latent, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, f))
    types = {t: [c for c in layout.columns if c.type == t] for t in ("numeric", "binary", "count", "categorical")}
    n_num = len(types["numeric"])
    b_lo = n_num
    b_hi = b_lo + len(types["binary"])
    cats = types["categorical"]
    first = min(c.start for c in cats)
    widest = max(c.width for c in cats)
    gather = torch.full((len(cats), widest), f - first, dtype=torch.long)
    for i, c in enumerate(cats):
        gather[i, : c.width] = torch.arange(c.start, c.stop) - first
    pad = gather == f - first
    log_scale = torch.tensor([math.log(c.scale) for c in types["numeric"]])
    log_sigma = nn.Parameter(torch.zeros(n_num))
    params = [*enc.parameters(), *dec.parameters(), log_sigma]
    opt = torch.optim.Adam(params, lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(len(x), generator=gen)
        for idx in order.split(batch):
            xb = x.index_select(0, idx)
            mean, logvar = enc(xb).chunk(2, dim=1)
            z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=gen)
            p = dec(z)
            sig = torch.logaddexp(log_sigma, torch.full_like(log_sigma, math.log(1e-3)))
            num = -0.5 * ((xb[:, :n_num] - p[:, :n_num]) * torch.exp(-sig)).pow(2) - sig - 0.5 * math.log(2 * math.pi)
            num = num - log_scale
            lb, xbin = p[:, b_lo:b_hi], xb[:, b_lo:b_hi]
            binary = xbin * lb - torch.nn.functional.softplus(lb)
            part = p[:, first:]
            logits = torch.cat([part, part.new_full((len(part), 1), -math.inf)], 1)[:, gather]
            logp = torch.log_softmax(logits, -1).masked_fill(pad, 0.0)
            xc = xb[:, first:]
            onehot = torch.cat([xc, xc.new_zeros((len(xc), 1))], 1)[:, gather]
            cat = (onehot * logp).sum(-1)
            recon = -(num.sum(1) + binary.sum(1) + cat.sum(1))
            kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(1)
            loss = (recon + 0.5 * kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    import sys

    sys.path.insert(0, str(HERE))
    from tables_side_by_side import make_census
    from train_speed import keep, rendered, table_options

    from vaecli import kinds
    from vaecli.data import load_dataset

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    table_options(parser, "rows_epoch")
    args = parser.parse_args()

    if rendered(args, TITLE, table_lines):
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_census(folder, n_train=50_000, n_test=5_000)
        ckpt = folder / "c.safetensors"
        cmd = f"vae train table:{folder / 'train.csv'} --dataset-option test={folder / 'test.csv'} --recipe tabular"
        cmd += f" -e {args.epochs} -o {ckpt} --data-dir {folder} --device cpu"
        subprocess.run(cmd.split(), check=True, capture_output=True)
        records = [json.loads(line) for line in open(folder / "c.metrics.jsonl")]
        vae_times = [r["seconds"] for r in records]
        import vaecli

        layout = vaecli.load(ckpt).likelihood.layout
        loaded = load_dataset(f"table:{folder / 'train.csv'}", {"test": str(folder / "test.csv")}, data_dir=folder)
        x = kinds.to_model(layout, loaded.splits.train.images)
        bare = bare_epochs(x, layout, args.epochs)
    vae_s, bare_s = statistics.median(vae_times[1:]), statistics.median(bare[1:])
    result = {
        "rows": 50_000,
        "columns": len(layout.columns),
        "inputs": layout.features,
        "threads": torch.get_num_threads(),
        "vae_epoch_seconds": vae_times,
        "bare_epoch_seconds": bare,
        "ratio": vae_s / bare_s,
    }
    keep(args, TITLE, table_lines, result)


TITLE = "## An epoch on rows against a bare PyTorch loop, CPU"


def table_lines(r: dict) -> list:
    from train_speed import machine

    vae_s, bare_s = statistics.median(r["vae_epoch_seconds"][1:]), statistics.median(r["bare_epoch_seconds"][1:])
    return [
        f"{r['rows']:,} rows x {r['columns']} columns ({r['inputs']} model inputs), the `tabular` recipe's model, "
        f"batch 500; {machine('cpu')}. Median of the epochs after the first.",
        "",
        "| loop | seconds per epoch |",
        "| --- | --- |",
        f"| vae train (the training steps of the epoch) | {vae_s:.3f} |",
        f"| bare PyTorch, the same arithmetic | {bare_s:.3f} |",
        f"| ratio | {vae_s / bare_s:.2f}x |",
        "",
        f"Command: `python benchmarks/rows_epoch.py --epochs {len(r['vae_epoch_seconds'])} --write`.",
    ]


if __name__ == "__main__":
    main()
