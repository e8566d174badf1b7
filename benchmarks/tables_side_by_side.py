"""Synthetic tables: vae against ctgan's TVAE, side by side in one script.

vae runs its ``tabular`` recipe (TVAE's network and batch, its loss_factor 2 as beta = 1/2; Adam
3e-3). The same tables (train and held-out test CSV files), the same epochs and batch size, each library
in a process of its own and TVAE in a venv of its own (made here on first use:
~/.cache/vaecli-bench/tvae with ctgan, sdmetrics and scikit-learn). Measured per table:

- whole-process training time (start of the process to the checkpoint / fitted model saved, and
  the synthetic rows written);
- SDMetrics' QualityReport of each synthetic table against the real training rows (column
  shapes and column pair trends; 0 to 1, higher is better);
- machine-learning efficacy: a gradient-boosting classifier (scikit-learn's
  HistGradientBoostingClassifier) trained on the synthetic rows, tested on the held-out real
  rows: accuracy and macro F1 (and the same classifier trained on the real training rows, the
  ceiling).

Tables (all made offline): ``census``, 15 columns of known structure generated here (numeric,
skewed, bimodal, categorical, binary, count; a label that depends on several of them), and
``breast-cancer`` (scikit-learn's bundled copy, 30 numeric columns and a binary label).

    python benchmarks/tables_side_by_side.py [--epochs 100] [--seeds 0,1] [--tables census,breast-cancer]

Prints a table and writes benchmarks/tables_side_by_side.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from peers import python_of  # noqa: E402

TVAE_PACKAGES = ["ctgan==0.12.1", "sdmetrics==0.32.0", "scikit-learn"]
LABEL = {"census": "income", "breast-cancer": "label"}


# -- the tables -----------------------------------------------------------------------------------


def make_census(folder: Path, n_train: int = 20_000, n_test: int = 5_000, seed: int = 0) -> None:
    """15 columns with known dependencies between them."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = n_train + n_test
    region = rng.choice(["north", "south", "east", "west", "centre"], n, p=[0.3, 0.25, 0.2, 0.15, 0.1])
    age = np.clip(rng.normal(40, 13, n), 17, 90).round()
    education = np.where(
        rng.random(n) < 0.15 + 0.01 * (age < 30),
        "school",
        rng.choice(["college", "bachelor", "master", "phd"], n, p=[0.4, 0.35, 0.2, 0.05]),
    )
    years = {"school": 10, "college": 12, "bachelor": 15, "master": 17, "phd": 20}
    edu_years = np.array([years[e] for e in education]) + rng.integers(-1, 2, n)
    sector = np.where(
        education == "phd",
        rng.choice(["research", "private"], n),
        rng.choice(["private", "public", "self"], n, p=[0.6, 0.3, 0.1]),
    )
    hours = np.where(rng.random(n) < 0.2, rng.normal(20, 5, n), rng.normal(42, 6, n)).clip(1, 99).round()  # bimodal
    married = (rng.random(n) < 1 / (1 + np.exp(-(age - 32) / 6))).astype(int)
    children = rng.poisson(0.3 + 1.4 * married)
    log_pay = 8.5 + 0.08 * edu_years + 0.01 * (age - 40) - 0.0002 * (age - 40) ** 2 + 0.015 * (hours - 40)
    log_pay += np.select([sector == "research", sector == "self"], [0.1, 0.3], 0.0) + rng.normal(0, 0.35, n)
    pay = np.exp(log_pay).round(2)
    capital = np.where(rng.random(n) < 0.9, 0.0, rng.lognormal(8, 1.2, n).round(0))  # mostly zero, a long tail
    commute = rng.gamma(2.0, 12.0, n).round(1)
    owns_car = (rng.random(n) < 0.4 + 0.005 * commute).astype(int)
    health = rng.choice(["good", "fair", "poor"], n, p=[0.7, 0.22, 0.08])
    score = (np.log(pay) - 10.1) * 2.5 + 0.00003 * capital + 0.3 * married + rng.normal(0, 0.5, n)
    income = np.where(score > 0.5, ">50K", "<=50K")
    columns = {
        "age": age.astype(int),
        "region": region,
        "education": education,
        "edu_years": edu_years,
        "sector": sector,
        "hours": hours.astype(int),
        "married": married,
        "children": children,
        "pay": pay,
        "capital": capital,
        "commute": commute,
        "owns_car": owns_car,
        "health": health,
        "score_noise": rng.normal(0, 1, n).round(3),
        "income": income,
    }
    _write(folder, columns, n_train)


def make_breast_cancer(folder: Path, seed: int = 0) -> None:
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.target))
    columns = {name.replace(" ", "_"): data.data[order, j] for j, name in enumerate(data.feature_names)}
    columns["label"] = np.array(data.target_names)[data.target[order]]
    _write(folder, columns, int(0.8 * len(order)))


def _write(folder: Path, columns: dict, n_train: int) -> None:
    import csv

    names = list(columns)
    n = len(columns[names[0]])
    for part, rows in (("train", range(n_train)), ("test", range(n_train, n))):
        with open(folder / f"{part}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(names)
            for i in rows:
                w.writerow([columns[c][i] for c in names])


# -- the two libraries ----------------------------------------------------------------------------


def run_vae(folder: Path, epochs: int, batch: int, seed: int, n: int) -> tuple:
    """The CLI as a user runs it: ``vae train`` (a whole process: its seconds are the training
    time), then ``vae sample``; (training seconds, both processes' seconds)."""
    ckpt = folder / f"vae-{seed}.safetensors"
    label = LABEL[folder.name]
    train = (
        f"vae train table:{folder / 'train.csv'} --dataset-option test={folder / 'test.csv'} "
        f"--dataset-option label={label} --recipe tabular "
        f"-e {epochs} -b {batch} --seed {seed} -o {ckpt} --force --data-dir {folder}"
    )
    start = time.perf_counter()
    subprocess.run(train.split(), check=True, capture_output=True)
    trained = time.perf_counter() - start
    sample = f"vae sample {ckpt} -n {n} --seed {seed} -o {folder / f'vae-{seed}.csv'}"
    subprocess.run(sample.split(), check=True, capture_output=True)
    return trained, time.perf_counter() - start


TVAE_SCRIPT = """
import sys, time
import pandas as pd
from ctgan import TVAE
folder, epochs, batch, seed, n, label = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
import torch, numpy as np
torch.manual_seed(seed); np.random.seed(seed)
real = pd.read_csv(f"{folder}/train.csv")
discrete = [c for c in real.columns if real[c].dtype == object or c == label or set(real[c].unique()) <= {0, 1}]
model = TVAE(epochs=epochs, batch_size=batch, enable_gpu=False)
model.fit(real, discrete_columns=discrete)
print(time.time(), flush=True)  # trained: the parent takes the process's training time from here
model.sample(n).to_csv(f"{folder}/tvae-{seed}.csv", index=False)
"""


def run_tvae(folder: Path, epochs: int, batch: int, seed: int, n: int) -> tuple:
    """(training seconds: process start to the model fitted, the whole process's seconds)."""
    wall, start = time.time(), time.perf_counter()
    cmd = [str(python_of("tvae", TVAE_PACKAGES)), "-c", TVAE_SCRIPT, str(folder), str(epochs), str(batch), str(seed)]
    done = subprocess.run([*cmd, str(n), LABEL[folder.name]], check=True, capture_output=True, text=True)
    return float(done.stdout.split()[0]) - wall, time.perf_counter() - start


SCORE_SCRIPT = """
import json, sys, warnings
warnings.filterwarnings("ignore")
import pandas as pd
from sdmetrics.reports.single_table import QualityReport
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import accuracy_score, f1_score
folder, label, files = sys.argv[1], sys.argv[2], sys.argv[3:]
real, test = pd.read_csv(f"{folder}/train.csv"), pd.read_csv(f"{folder}/test.csv")
meta = {"columns": {c: {"sdtype": "categorical" if (real[c].dtype == object or c == label or set(real[c].unique()) <= {0, 1}) else "numerical"} for c in real.columns}}
cats = [c for c in real.columns if meta["columns"][c]["sdtype"] == "categorical" and c != label]
def features(frame):
    x = frame.drop(columns=[label]).copy()
    for c in cats:
        x[c] = pd.Categorical(x[c].astype(str), categories=sorted(real[c].astype(str).unique()))
    return x
def efficacy(train):
    clf = HistGradientBoostingClassifier(random_state=0, categorical_features="from_dtype")
    clf.fit(features(train), train[label].astype(str))
    pred = clf.predict(features(test))
    truth = test[label].astype(str)
    return accuracy_score(truth, pred), f1_score(truth, pred, average="macro")
out = {"real": dict(zip(("accuracy", "f1"), efficacy(real)))}
for f in files:
    synth = pd.read_csv(f"{folder}/{f}")
    report = QualityReport()
    report.generate(real, synth[real.columns], meta, verbose=False)
    props = report.get_properties().set_index("Property")["Score"].to_dict()
    acc, f1 = efficacy(synth)
    out[f] = {"quality": report.get_score(), "column_shapes": props.get("Column Shapes"), "pair_trends": props.get("Column Pair Trends"), "accuracy": acc, "f1": f1}
print(json.dumps(out))
"""


def score(folder: Path, files: list) -> dict:
    cmd = [str(python_of("tvae", TVAE_PACKAGES)), "-c", SCORE_SCRIPT, str(folder), LABEL[folder.name], *files]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main() -> None:
    from train_speed import keep, rendered, table_options

    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--tables", default="census,breast-cancer")
    table_options(parser, "tables_side_by_side")
    args = parser.parse_args()

    if rendered(args, TITLE, table_lines):
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict = {"epochs": args.epochs, "batch": args.batch, "seeds": seeds, "tables": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for table in args.tables.split(","):
            folder = Path(tmp) / table
            folder.mkdir()
            (make_census if table == "census" else make_breast_cancer)(folder)
            n = sum(1 for _ in open(folder / "train.csv")) - 1
            rows: dict = {"vae": [], "tvae": []}
            for seed in seeds:  # alternating, so that neither gets the quieter machine
                for lib, run in (("tvae", run_tvae), ("vae", run_vae)):
                    trained, total = run(folder, args.epochs, args.batch, seed, n)
                    rows[lib].append({"seconds": trained, "with_sampling": total})
            scores = score(folder, [f"{lib}-{s}.csv" for lib in ("vae", "tvae") for s in seeds])
            for lib in ("vae", "tvae"):
                for s, row in zip(seeds, rows[lib]):
                    row.update(scores[f"{lib}-{s}.csv"])
            results["tables"][table] = {"rows": n, "real": scores["real"], **rows}
            print(table, json.dumps(results["tables"][table], indent=1), flush=True)
    keep(args, TITLE, table_lines, results)


TITLE = "## Synthetic tables against TVAE (ctgan 0.12.1), CPU"


def table_lines(results: dict) -> list:
    def mean(rows: list, key: str) -> float:
        return sum(r[key] for r in rows) / len(rows)

    from train_speed import machine

    lines = [
        f"{results['epochs']} epochs, batch {results['batch']}, seeds {results['seeds']} (means); {machine('cpu')}.",
        "seconds: the training process, from its start to the model saved; +sampling: with the synthetic rows",
        "written. Quality: SDMetrics' QualityReport (column shapes and pair trends) against the training rows;",
        "accuracy and macro F1: a gradient-boosting classifier trained on the synthetic rows, tested on real",
        "held-out rows (real: trained on the real training rows).",
        "",
        "| table | library | seconds | +sampling | quality | shapes | pairs | accuracy | F1 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for table, r in results["tables"].items():
        for lib in ("vae", "tvae"):
            rows = r[lib]
            lines.append(
                f"| {table} | {lib} | {mean(rows, 'seconds'):.1f} | {mean(rows, 'with_sampling'):.1f} | "
                f"{mean(rows, 'quality'):.3f} | {mean(rows, 'column_shapes'):.3f} | {mean(rows, 'pair_trends'):.3f} | "
                f"{mean(rows, 'accuracy'):.4f} | {mean(rows, 'f1'):.4f} |"
            )
        real = r["real"]
        lines.append(f"| {table} | real rows | | | | | | {real['accuracy']:.4f} | {real['f1']:.4f} |")
    seeds = ",".join(str(s) for s in results["seeds"])
    lines += [
        "",
        f"Command: `python benchmarks/tables_side_by_side.py --epochs {results['epochs']} --seeds {seeds} --write`.",
    ]
    return lines


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
