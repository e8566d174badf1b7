"""Quality: recipes trained on MNIST against the test NLL their source publishes.

For each recipe, as a user runs them, each in its own process:

    vae train --recipe NAME -o NAME.safetensors [--epochs N]       (shortened with --epochs NAME=N)
    vae evaluate NAME.safetensors --iw-samples 5000 --json          (the test split, binarized as trained)

and, when the source reports its NLL with another number of importance samples (pythae: 200),
`vae evaluate` again with that k, so that the gap is also measured with the source's own bound.

Every run is kept in benchmarks/quality.json, one row per recipe, epochs, device and precision: a
later run on a GPU adds its rows beside those of the CPU. --write rewrites the section
"Quality: recipes against published NLL" of benchmarks/RESULTS.md from all of them.

    python benchmarks/quality.py --data-dir ../shared/data --recipes pytorch-example pythae-vae \\
        --epochs pythae-vae=50 --write                                                 # CPU
    python benchmarks/quality.py --data-dir DIR --device cuda \\
        --recipes pythae-vae burda-vae burda-iwae --write                             # full runs, GPU
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from train_speed import machine, write_section  # noqa: E402

STORE = HERE / "quality.json"
TITLE = "## Quality: recipes against published NLL"


def vae_command() -> str:
    """The `vae` of this Python (its virtual environment), else the one on PATH."""
    beside = Path(sys.executable).with_name("vae")
    found = str(beside) if beside.exists() else shutil.which("vae")
    if not found:
        raise SystemExit("no `vae` command: pip install the project first")
    return found


ENV = dict(os.environ)


def timed(cmd: list) -> tuple[float, str]:
    print("$ " + " ".join(map(str, cmd)), flush=True)
    start = time.perf_counter()
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=ENV)
    seconds = time.perf_counter() - start
    if out.returncode:
        raise SystemExit(f"failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return seconds, out.stdout


def parse_epochs(pairs: list) -> dict:
    epochs = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not value.isdigit() or int(value) < 1:
            raise SystemExit(f"--epochs takes NAME=N with N >= 1, got {pair!r}")
        epochs[name] = int(value)
    return epochs


def falling(metrics: list) -> tuple[int, float]:
    """Over how many final epochs, and by how many nats, the test -ELBO still fell."""
    n = max(1, len(metrics) // 5)
    if len(metrics) <= n:
        return 0, 0.0
    return n, metrics[-n - 1]["test_nelbo"] - metrics[-1]["test_nelbo"]


def run_recipe(name: str, args, epochs: dict, folder: Path) -> dict:
    vae = vae_command()
    ckpt = folder / f"{name}.safetensors"
    where = ["--data-dir", args.data_dir, "--no-download", "--device", args.device]
    extra = (["--epochs", str(epochs[name])] if name in epochs else []) + (
        ["--precision", args.precision] if args.precision else []
    )
    train_s, _ = timed([vae, "train", "--recipe", name, "-o", ckpt, "--force", *where, *extra])
    meta = json.loads(timed([vae, "info", ckpt, "--json"])[1])
    training, recipe = meta["training"], meta["training"]["recipe"]
    eval_s, out = timed([vae, "evaluate", ckpt, "--iw-samples", str(args.iw_samples), "--json", *where])
    result = json.loads(out)
    published = recipe.get("published") or {}
    at_published_k = None
    k = published.get("iw_samples")
    if published.get("nll") is not None and k and int(k) != args.iw_samples:
        at_published_k = json.loads(timed([vae, "evaluate", ckpt, "--iw-samples", str(k), "--json", *where])[1])["nll"]
    n, drop = falling(meta["metrics"])
    row = {
        "recipe": name,
        "epochs": meta["epoch"],
        "published_epochs": published.get("epochs") or recipe["settings"].get("epochs"),
        "train_s": train_s,
        "train_epoch_s": sum(m["seconds"] for m in meta["metrics"]) / len(meta["metrics"]),
        "evaluate_s": eval_s,
        "device": args.device,
        "precision": training.get("precision"),
        "machine": machine(args.device),
        "iw_samples": args.iw_samples,
        "nll": result["nll"],
        "elbo": result["nelbo"],
        "nll_at_published_k": at_published_k,
        "published": published,
        "binarize": training.get("binarize"),
        "likelihood": training.get("likelihood"),
        "falling": [n, drop],
        "command": f"vae train --recipe {name}" + "".join(f" {w}" for w in extra),
        "date": datetime.date.today().isoformat(),
        "vaecli": meta["versions"]["vaecli"],
        "torch": meta["versions"]["torch"],
    }
    print(json.dumps(row), flush=True)
    return row


def note(row: dict) -> str:
    parts = []
    pub = row["published"]
    if row["epochs"] < (row["published_epochs"] or 0):
        n, drop = row["falling"]
        parts.append(
            f"shortened to {row['epochs']} of {row['published_epochs']} epochs"
            + (
                f"; the test -ELBO still fell {drop:.2f} nats over the last {n} epoch{'s' if n != 1 else ''}"
                if n
                else ""
            )
        )
    if row["likelihood"] == "bernoulli" and row["binarize"] == "none":
        parts.append("Bernoulli on grey levels: a cross-entropy, not comparable with NLLs of binarized MNIST")
    if pub.get("nll") is None:
        parts.append("the source publishes no NLL")
    elif row["epochs"] >= (row["published_epochs"] or 0):
        parts.append("full length (see below)")
    return "; ".join(parts)


def data_of(row: dict) -> str:
    """Which data a row trained and tested on: the same words a paper's data would need to be
    compared with it."""
    if "binarized-mnist" in row["command"]:
        return "Larochelle's fixed binarization (binarized-mnist)"
    return {
        "none": "MNIST, grey levels",
        "static": "MNIST, one fixed draw of ours (not Larochelle's)",
        "dynamic": "MNIST, dynamically binarized",
    }.get(row["binarize"], row["binarize"])


def table(rows: list) -> str:
    ks = sorted({r["iw_samples"] for r in rows})
    ours = f"our NLL, k={ks[0]} (-ELBO)" if len(ks) == 1 else "our NLL (-ELBO)"
    head = (
        "| recipe | data | epochs run / published | train wall | evaluate wall | machine | precision | "
        f"{ours} | ours at the published k | published NLL (k) | gap | note |"
    )
    lines = [head, "| " + " | ".join(["---"] * 12) + " |"]
    for r in rows:
        pub = r["published"]
        nll_k = f"{r['nll']:.2f} ({r['elbo']:.2f})" + (f", k={r['iw_samples']}" if len(ks) > 1 else "")
        at_k = (
            f"{r['nll_at_published_k']:.2f} (k={pub['iw_samples']})" if r["nll_at_published_k"] is not None else "same"
        )
        published = f"{pub['nll']:.2f} (k={pub.get('iw_samples', '?')})" if pub.get("nll") is not None else "-"
        if pub.get("nll") is not None:
            ours = r["nll_at_published_k"] if r["nll_at_published_k"] is not None else r["nll"]
            gap = f"{ours - pub['nll']:+.2f}"
        else:
            gap = "-"
        lines.append(
            f"| {r['recipe']} | {data_of(r)} | {r['epochs']} / {r['published_epochs']} | {r['train_s'] / 60:.1f} min "
            f"({r['train_epoch_s']:.1f} s/epoch) | {r['evaluate_s'] / 60:.1f} min | {r['machine']} | {r['precision']} | "
            f"{nll_k} | {at_k} | {published} | {gap} | {note(r)} |"
        )
    return "\n".join(lines)


NOTES = """\
The data column says what each row trained and tested on; a figure compares with a paper's only on the
same data. The published figures of pythae (VAE 89.78, VAMP 85.79, IWAE 86.82, ...) and of the VampPrior
paper are on Larochelle & Murray's fixed binarization (`vae train binarized-mnist`, 50,000 training
images); Burda et al.'s are on dynamically binarized MNIST (`--binarize dynamic`, 60,000 images). No row
here has yet run on `binarized-mnist`: its .amat files are not on this machine, and nothing may be
downloaded here.

NLLs are in nats per test image, estimated with k importance samples (Burda et al. 2015) by `vae evaluate
--iw-samples k` on the 10,000 MNIST test images, binarized as the model was trained (one fixed draw; grey
levels for `pytorch-example`); -ELBO is the same evaluation's negative ELBO. The gap is our NLL at the
source's own k minus the published figure (positive: worse). Each row is `vae train --recipe NAME` (the
`command` of its row in benchmarks/quality.json has its options), then `vae evaluate`, each timed as a
whole process, data loading included.

The CPU rows ran with `--threads 1` (OMP_NUM_THREADS=1) on a 2-core machine shared with other work: with
two threads, a core taken by another process slowed an epoch from 3 s to 70 s; with one, the run keeps one
core to itself. The other core was busy most of the time, so the wall times are those of one core,
somewhat inflated by the shared memory bandwidth. bf16 is the `vae train` default on this CPU (AVX512-BF16);
an fp32 run of `pythae-vae --epochs 80` gave the same test -ELBO within 0.03 nats at every epoch (100.31
against 100.33 after 80 epochs), so the precision does not explain any gap.

`pytorch-example` publishes no NLL: the PyTorch example prints only its test -ELBO, and measured side by
side (the first section of this file) it reaches 105.62 nats after 10 epochs, the mean of three seeds;
this run's -ELBO is 105.61. On grey levels its NLL is a cross-entropy, not a likelihood of binary images.

`pythae-vae`, shortened to 80 epochs (4.8 minutes): 5.5 nats behind, because pythae trains 500 epochs at a
learning rate of 1e-4, ten times below the usual, and the test -ELBO was still falling (0.7 nats over the
last 16 epochs). The full 500 epochs fit on one CPU core in 31 minutes, so they are in the table too: the
gap closes to 2.55 nats at pythae's own k=200 (1.77 nats to our k=5000 figure), more than 1 nat, and not
explained by the epochs, the schedule (the same MultiStepLR, checked step by step in the tests), the
precision or the estimator (pythae's `get_nll` is the same importance-sampled bound, 200 samples). What
remains different is the data: pythae trains on Larochelle's fixed binarized MNIST (50,000 training
images, with its own binarized test set), which is not available offline here; this row trains on one
fixed draw of all 60,000 MNIST training images and tests on one draw of the test images (`--binarize
static`). That difference is untested, so the remaining gap is unexplained. Two facts bear on it: the model
overfits its one static draw (test -ELBO 97.3 against 95.2 on the training images at the end), so the
draw matters; and one seed was run (for the default model, seeds move the test -ELBO by about 0.3 nats).

No GPU was available for this work, so the Burda et al. recipes have no rows: on this CPU (one thread) an
epoch of `burda-vae` took 9.5 s and one of `burda-iwae` (k=50) 49 s, so their 3280 epochs would take about
9 and 45 hours. On a GPU: `python benchmarks/quality.py --data-dir DIR --device cuda --recipes burda-vae
burda-iwae --write` adds them beside these rows.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--recipes", nargs="+", default=["pytorch-example", "pythae-vae"])
    parser.add_argument(
        "--epochs", nargs="*", default=[], metavar="NAME=N", help="shorten (or lengthen) a recipe's run: pythae-vae=40"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", help="vae train --precision (default: the vae train default, auto)")
    parser.add_argument("--iw-samples", type=int, default=5000)
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads of each vae process (OMP_NUM_THREADS); on a machine shared with other "
        "work, fewer threads than cores avoids oversubscription, which slows PyTorch manyfold",
    )
    parser.add_argument("--keep", help="keep the checkpoints in this folder (default: a temporary one)")
    parser.add_argument(
        "--write",
        action="store_true",
        help="keep the rows in benchmarks/quality.json and rewrite the section of benchmarks/RESULTS.md",
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="run nothing: rewrite the section of benchmarks/RESULTS.md from benchmarks/quality.json",
    )
    args = parser.parse_args()
    if args.render:
        write_section(TITLE, table(json.loads(STORE.read_text())) + "\n\n" + NOTES)
        return
    if not (Path(args.data_dir) / "MNIST" / "raw").is_dir():
        raise SystemExit(f"no MNIST in {args.data_dir}/MNIST/raw; pass --data-dir")
    epochs = parse_epochs(args.epochs)
    if args.threads:
        import torch

        ENV["OMP_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)  # what machine() reports
    unknown = sorted(set(epochs) - set(args.recipes))
    if unknown:
        raise SystemExit(f"--epochs names recipes that are not run: {', '.join(unknown)}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        rows = [run_recipe(name, args, epochs, folder) for name in args.recipes]
    print(table(rows))
    if args.write:
        stored = json.loads(STORE.read_text()) if STORE.exists() else []
        key = lambda r: (r["recipe"], r["epochs"], r["device"], r["precision"])  # noqa: E731
        new = {key(r) for r in rows}
        stored = [r for r in stored if key(r) not in new] + rows
        STORE.write_text(json.dumps(stored, indent=1) + "\n")
        write_section(TITLE, table(stored) + "\n\n" + NOTES)


if __name__ == "__main__":
    main()
