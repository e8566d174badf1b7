"""MIG and DCI on `shapes` for the disentangling families at one training budget, several seeds.

Trains each model of ``MODELS`` (the VAE, beta-VAE with beta=4, beta-TC-VAE with beta=6,
FactorVAE with gamma=35, DIP-VAE-I, and the capacity-annealed beta-VAE) on the built-in
``shapes`` data (32x32, 20,000 training images, five factors: shape, scale, orientation,
x and y), the same network (the default MLP, 10 latent dimensions), the same epochs and batch,
for each of ``--seeds``; then measures every metric of ``vae evaluate --disentanglement`` on
10,000 test images and writes the mean and spread of each model, next to the figures Locatello
et al. 2019 report for dSprites. Needs the plugin ``plugins/vaecli-disentangle``.

    python benchmarks/disentanglement_study.py --seeds 0 1 2 --epochs 30 --write
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TITLE = "## Disentanglement on `shapes`: MIG and DCI by family and seed, CPU"

# name: (--model, --model-option values, --beta)
MODELS = {
    "vae": ("vae", {}, 1.0),
    "beta-vae (beta=4)": ("vae", {}, 4.0),
    "beta-tc-vae (beta=6)": ("btcvae", {"beta": 6.0, "dataset_size": 20000}, 1.0),
    "factorvae (gamma=35)": ("factorvae", {"gamma": 35.0}, 1.0),
    "dip-vae-i (lambda_od=10)": ("dipvae", {"kind": "i", "lambda_od": 10.0, "lambda_d_factor": 10.0}, 1.0),
    "annealed-vae (C=10, gamma=100)": ("annealedvae", {"c_max": 10.0, "gamma": 100.0, "iterations": 3000}, 1.0),
}
DATA = {"n_train": 20000, "n_test": 10000, "size": 32}
SHOWN = ("mig", "dci_disentanglement", "dci_completeness", "dci_informativeness", "sap", "factorvae_score")


def run_one(name: str, seed: int, epochs: int, tmp: Path) -> dict:
    import vaecli

    kind, options, beta = MODELS[name]
    started = time.perf_counter()
    result = vaecli.train(
        dataset="shapes",
        dataset_options=dict(DATA),
        model=kind,
        model_options=dict(options),
        beta=beta,
        latent_dim=10,
        epochs=epochs,
        seed=seed,
        device="cpu",
        out=str(tmp / f"{kind}-{seed}.safetensors"),
        force=True,
    )
    trained = time.perf_counter() - started
    model = vaecli.load(result.path)
    inputs = vaecli.read_inputs("shapes:test", model)
    started = time.perf_counter()
    scores = model.disentanglement(inputs, seed=seed)
    return {
        "model": name,
        "seed": seed,
        "train_s": trained,
        "metrics_s": time.perf_counter() - started,
        "test_nelbo": result.metrics[-1].get("test_nelbo"),
        **{k: scores[k] for k in SHOWN + ("modularity", "explicitness")},
    }


def cell(rows: list, key: str, digits: int = 2) -> str:
    """Mean ± standard deviation of ``key`` over ``rows``."""
    values = [r[key] for r in rows if r[key] is not None]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--json", default=str(HERE / "disentanglement_study.json"))
    parser.add_argument("--write", action="store_true", help="rewrite the section of RESULTS.md")
    args = parser.parse_args()
    from train_speed import machine, publish

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for name in args.models:
                row = run_one(name, seed, args.epochs, Path(tmp))
                rows.append(row)
                print(json.dumps(row), flush=True)
                Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        f"Machine: {machine('cpu')}. `shapes` (32x32, {DATA['n_train']:,} training images), the default MLP "
        f"(one hidden layer of 400), 10 latent dimensions, Adam 1e-3, batch 128, {args.epochs} epochs for "
        f"every model; metrics of `vae evaluate --disentanglement` on {DATA['n_test']:,} test images "
        f"(seeded by the run's seed). Mean ± standard deviation over seeds {', '.join(map(str, args.seeds))}.",
        "",
        "| model | " + " | ".join(SHOWN) + " | test -ELBO | train s |",
        "| --- | " + " | ".join("---:" for _ in SHOWN) + " | ---: | ---: |",
    ]
    for name in args.models:
        mine = [r for r in rows if r["model"] == name]
        lines.append(
            f"| {name} | "
            + " | ".join(cell(mine, k) for k in SHOWN)
            + f" | {cell(mine, 'test_nelbo', 1)} | {statistics.mean(r['train_s'] for r in mine):.0f} |"
        )
    lines += ["", f"Command: `python benchmarks/disentanglement_study.py --epochs {args.epochs} --write`."]
    publish(TITLE, lines, args.write)


if __name__ == "__main__":
    main()
