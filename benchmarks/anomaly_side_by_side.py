"""Anomaly scores: vae's per-row NLL against PyOD's VAE, side by side in one script.

The same rows, the same epochs and batch size, each library in a process of its own and PyOD
in a venv of its own (made here on first use: ~/.cache/vaecli-bench/pyod with pyod, torch,
scikit-learn, tqdm). As in PyOD's benchmarks the detectors are unsupervised: each fits on every
row (outliers included, unlabelled) and scores every row; the labels only measure the ROC-AUC.

vae: ``vae train tensor:rows.npz`` (the rows as both splits) with PyOD's network (latent 2,
128-64-32 each way) and a KL weight of 1/1000 (PyOD's VAE clamps its KL term to its ``capacity``,
0 by default: it trains with no KL at all), then ``vae evaluate ... --per-example``: the score of
a row is its importance-weighted NLL in nats (k = 100). PyOD: ``pyod.models.vae.VAE`` with its
defaults but the epochs and batch, ``decision_scores_`` (its reconstruction error).

Tables with labelled outliers, all made offline from scikit-learn's bundled copies, as the ODDS
collection builds its own from the UCI originals:

- ``breast-cancer``: benign tumours, and 10% as many malignant ones (outliers);
- ``wine``: classes 0 and 1, and 10 wines of class 2;
- ``digits``: digits 1 to 9, and 50 zeros (64 pixels as numbers);
- ``blobs``: 3,000 rows of a 10-dimensional Gaussian mixture, and 150 uniform outliers.

    python benchmarks/anomaly_side_by_side.py [--epochs 50] [--seeds 0,1]

Prints a table and writes benchmarks/anomaly_side_by_side.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from peers import python_of  # noqa: E402

VAE_SETTINGS = ["-z", "2", "--arch-option", "hidden=128,64,32", "--beta", "0.001"]
PYOD_PACKAGES = ["pyod==3.6.7", "torch", "scikit-learn", "tqdm"]


def tables() -> dict:
    from sklearn.datasets import load_breast_cancer, load_digits, load_wine

    rng = np.random.default_rng(0)
    out = {}

    def subsample(x, y, inlier, n_out):
        inl, outl = np.flatnonzero(inlier), np.flatnonzero(~inlier)
        outl = rng.choice(outl, size=min(n_out, len(outl)), replace=False)
        rows = rng.permutation(np.concatenate([inl, outl]))
        return x[rows].astype(np.float32), (~inlier[rows]).astype(int)

    data = load_breast_cancer()
    benign = data.target == 1
    out["breast-cancer"] = subsample(data.data, data.target, benign, int(0.1 * benign.sum()))
    data = load_wine()
    out["wine"] = subsample(data.data, data.target, data.target != 2, 10)
    data = load_digits()
    out["digits"] = subsample(data.data, data.target, data.target != 0, 50)
    centres = rng.normal(0, 4, (4, 10))
    inliers = centres[rng.integers(0, 4, 3000)] + rng.normal(0, 1, (3000, 10))
    outliers = rng.uniform(-10, 10, (150, 10))
    x = np.concatenate([inliers, outliers]).astype(np.float32)
    y = np.r_[np.zeros(3000, int), np.ones(150, int)]
    order = rng.permutation(len(y))
    out["blobs"] = (x[order], y[order])
    return out


def run_vae(folder: Path, x, epochs: int, batch: int, seed: int) -> tuple:
    np.savez(folder / "rows.npz", x_train=x, x_test=x)
    ckpt, scores = folder / f"vae-{seed}.safetensors", folder / f"vae-{seed}.csv"
    start = time.perf_counter()
    for args in (
        [
            "train",
            f"tensor:{folder / 'rows.npz'}",
            *VAE_SETTINGS,
            "-e",
            str(epochs),
            "-b",
            str(batch),
            "--seed",
            str(seed),
            "-o",
            str(ckpt),
            "--force",
            "--data-dir",
            str(folder),
        ],
        [
            "evaluate",
            str(ckpt),
            f"tensor:{folder / 'rows.npz'}:test",
            "-k",
            "100",
            "--per-example",
            str(scores),
            "--force",
            "--json",
        ],
    ):
        subprocess.run(["vae", *args], check=True, capture_output=True)
    seconds = time.perf_counter() - start
    import csv

    with open(scores) as f:
        return np.array([float(r["nll"]) for r in csv.DictReader(f)]), seconds


PYOD_SCRIPT = """
import sys, time
import numpy as np
from pyod.models.vae import VAE
x = np.load(sys.argv[1])["x_train"]
epochs, batch, seed = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
clf = VAE(epoch_num=epochs, batch_size=batch, random_state=seed, verbose=0, device="cpu")
clf.fit(x)
np.save(sys.argv[5], clf.decision_scores_)
"""


def run_pyod(folder: Path, epochs: int, batch: int, seed: int) -> tuple:
    out = folder / f"pyod-{seed}.npy"
    start = time.perf_counter()
    cmd = [str(python_of("pyod", PYOD_PACKAGES)), "-c", PYOD_SCRIPT, str(folder / "rows.npz"), str(epochs)]
    subprocess.run([*cmd, str(batch), str(seed), str(out)], check=True, capture_output=True)
    return np.load(out), time.perf_counter() - start


def main() -> None:
    from sklearn.metrics import roc_auc_score
    from train_speed import keep, rendered, table_options

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seeds", default="0,1")
    table_options(parser, "anomaly_side_by_side")
    args = parser.parse_args()

    if rendered(args, TITLE, table_lines):
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict = {"epochs": args.epochs, "batch": args.batch, "seeds": seeds, "tables": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, (x, y) in tables().items():
            row: dict = {"rows": len(y), "features": x.shape[1], "outliers": int(y.sum()), "vae": [], "pyod": []}
            for seed in seeds:
                scores, seconds = run_vae(folder, x, args.epochs, args.batch, seed)
                row["vae"].append({"roc_auc": roc_auc_score(y, scores), "seconds": seconds})
                scores, seconds = run_pyod(folder, args.epochs, args.batch, seed)
                row["pyod"].append({"roc_auc": roc_auc_score(y, scores), "seconds": seconds})
            results["tables"][name] = row
            print(name, json.dumps(row), flush=True)
    keep(args, TITLE, table_lines, results)


TITLE = "## Anomaly scores against PyOD's VAE (pyod 3.6.7), CPU"


def table_lines(results: dict) -> list:
    from train_speed import machine

    def mean(r: dict, lib: str, key: str) -> float:
        return sum(v[key] for v in r[lib]) / len(r[lib])

    lines = [
        f"{results['epochs']} epochs, batch {results['batch']}, seeds {results['seeds']} (means); {machine('cpu')}.",
        "Unsupervised: each detector fits on every row and scores every row; ROC-AUC of the scores against",
        "the outlier labels. vae's score: the row's NLL (k = 100); PyOD's: its reconstruction distance.",
        "Seconds: the whole processes (vae: train and evaluate; PyOD: fit and score).",
        "",
        "| table | rows | outliers | vae ROC-AUC | PyOD ROC-AUC | vae seconds | PyOD seconds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results["tables"].items():
        lines.append(
            f"| {name} | {r['rows']} | {r['outliers']} | {mean(r, 'vae', 'roc_auc'):.3f} | "
            f"{mean(r, 'pyod', 'roc_auc'):.3f} | {mean(r, 'vae', 'seconds'):.1f} | {mean(r, 'pyod', 'seconds'):.1f} |"
        )
    seeds = ",".join(str(s) for s in results["seeds"])
    lines += [
        "",
        f"Command: `python benchmarks/anomaly_side_by_side.py --epochs {results['epochs']} --seeds {seeds} --write`.",
    ]
    return lines


if __name__ == "__main__":
    main()
