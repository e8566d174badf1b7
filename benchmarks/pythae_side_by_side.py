"""Model families side by side with pythae 0.1.2: the same data, network, optimiser and epochs.

For each family, in one run of this script:

- vae: ``vaecli.train(model=FAMILY, ...)`` then ``model.evaluate(test, iw_samples=K)``;
- pythae: the same family (``pythae.models``) with pythae's default MNIST MLP (``--hidden``
  units, 512 there), which is our ``mlp`` (784-H-relu-(mean, logvar) encoder, D-H-relu-784 decoder),
  trained by its ``TrainingPipeline`` (``CoupledOptimizerTrainer`` for PIWAE, as pythae does) in
  its own virtual environment (``--pythae-python``), then ``model.get_nll(test, n_samples=K)``.

Data: MNIST (``--data-dir``) binarized once, the same draw for both (vaecli's fixed draws of
the training and test sets); the NLL is measured on the first ``--test`` test images. Both use
Adam at ``--lr``, batch ``--batch-size``, fp32, ``--epochs`` epochs, one thread each, one after
the other; the family options are those of pythae's reproducibility scripts. pythae's
published figures (its reproducibility table) come from 500 to 3280 epochs on other networks:
they are the target, not a comparison at equal budget.

    python benchmarks/pythae_side_by_side.py --data-dir ../shared/data \\
        --pythae-python /tmp/pythae-venv/bin/python --epochs 2 --write
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STORE = HERE / "pythae_side_by_side.json"
TITLE = "## Model families side by side with pythae"

# family: (vaecli model options, pythae class, pythae config options, pythae's published NLL)
FAMILIES = {
    "vae": ({}, "VAE", {}, 89.78),
    "vamp": ({"components": 500}, "VAMP", {"number_components": 500, "linear_scheduling_steps": 0}, 85.79),
    "iwae": ({"k": 50}, "IWAE", {"number_samples": 50}, 86.82),
    "miwae": ({"m": 8, "k": 8}, "MIWAE", {"number_gradient_estimates": 8, "number_samples": 8}, 85.09),
    "piwae": ({"m": 8, "k": 8}, "PIWAE", {"number_gradient_estimates": 8, "number_samples": 8}, 84.58),
    "ciwae": ({"beta": 0.5, "k": 64}, "CIWAE", {"beta": 0.5, "number_samples": 64}, 84.74),
    "hvae": (
        {"steps": 4, "step_size": 0.05, "beta_zero": 1.0, "learn": False},
        "HVAE",
        {"n_lf": 4, "eps_lf": 0.05, "beta_zero": 1.0, "learn_eps_lf": False, "learn_beta_zero": False},
        86.21,
    ),
}


def data(data_dir: str, test: int):
    """The binarized training set and the first ``test`` binarized test images, uint8 (N, 1, 28, 28)."""
    from vaecli.data import load_dataset
    from vaecli.images import BINARIZE_SEEDS, binarize

    splits = load_dataset("mnist", {}, data_dir, False).splits
    train = binarize(splits.train.images, BINARIZE_SEEDS["train"])
    held = binarize(splits.test.images, BINARIZE_SEEDS["test"])[:test]
    return train, held


def run_vaecli(family: str, args, test) -> dict:
    import torch

    import vaecli

    torch.set_num_threads(1)
    options = FAMILIES[family][0]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = vaecli.train(
            dataset="mnist",
            data_dir=args.data_dir,
            download=False,
            binarize="static",
            arch="mlp",
            arch_options={"hidden": (args.hidden,)},
            latent_dim=args.latent_dim,
            model=family,
            model_options=dict(options),
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            device="cpu",
            precision="fp32",
            seed=args.seed,
            out=str(Path(tmp) / f"{family}.safetensors"),
        )
        train_s = time.perf_counter() - start
        model = vaecli.load(result.path)
        start = time.perf_counter()
        numbers = model.evaluate(test, iw_samples=args.k)
        return {"nll": numbers["nll"], "train_s": train_s, "eval_s": time.perf_counter() - start}


PYTHAE_NETS = r"""
class Encoder(BaseEncoder):  # pythae's Encoder_VAE_MLP with `hidden` units (512 there)
    def __init__(self):
        BaseEncoder.__init__(self)
        self.layers = nn.Sequential(nn.Linear(784, spec["hidden"]), nn.ReLU())
        self.embedding = nn.Linear(spec["hidden"], spec["latent_dim"])
        self.log_var = nn.Linear(spec["hidden"], spec["latent_dim"])
    def forward(self, x):
        h = self.layers(x.reshape(-1, 784))
        return ModelOutput(embedding=self.embedding(h), log_covariance=self.log_var(h))
class Decoder(BaseDecoder):  # pythae's Decoder_AE_MLP with `hidden` units
    def __init__(self):
        BaseDecoder.__init__(self)
        self.layers = nn.Sequential(nn.Linear(spec["latent_dim"], spec["hidden"]), nn.ReLU(),
                                    nn.Linear(spec["hidden"], 784), nn.Sigmoid())
    def forward(self, z):
        return ModelOutput(reconstruction=self.layers(z).reshape(-1, 1, 28, 28))
"""

PYTHAE_WORKER = r"""
import json, sys, tempfile, time
import numpy as np, torch
torch.set_num_threads(1)
spec = json.loads(sys.argv[1])
torch.manual_seed(spec["seed"])
from torch import nn
from pythae import models
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.pipelines import TrainingPipeline
from pythae.trainers import BaseTrainerConfig, CoupledOptimizerTrainerConfig
train = torch.from_numpy(np.load(spec["train"])).float()
test = torch.from_numpy(np.load(spec["test"])).float()
config = getattr(models, spec["cls"] + "Config")(input_dim=(1, 28, 28), latent_dim=spec["latent_dim"],
                                                 reconstruction_loss="bce", **spec["options"])
{nets}model = getattr(models, spec["cls"])(config, encoder=Encoder(), decoder=Decoder())
with tempfile.TemporaryDirectory() as tmp:
    common = dict(output_dir=tmp, num_epochs=spec["epochs"], per_device_train_batch_size=spec["batch_size"],
                  per_device_eval_batch_size=spec["batch_size"], steps_saving=None, no_cuda=True)
    if spec["cls"] == "PIWAE":
        trainer = CoupledOptimizerTrainerConfig(learning_rate=spec["lr"], **common)
    else:
        trainer = BaseTrainerConfig(learning_rate=spec["lr"], **common)
    start = time.perf_counter()
    TrainingPipeline(model=model, training_config=trainer)(train_data=train, eval_data=None)
    train_s = time.perf_counter() - start
model.eval()
start = time.perf_counter()
# the mean of log p(x); without gradients where the model needs none (HVAE's leapfrog steps do)
with torch.set_grad_enabled(spec["cls"] == "HVAE"):
    log_p = model.get_nll(test, n_samples=spec["k"], batch_size=1000)
print(json.dumps({"nll": -float(log_p), "train_s": train_s, "eval_s": time.perf_counter() - start}))
"""


def run_pythae(family: str, args, train, test) -> dict:
    import numpy as np

    _, cls, options, _ = FAMILIES[family]
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "train.npy", (train.numpy() / 255).astype(np.float32))
        np.save(Path(tmp) / "test.npy", (test.numpy() / 255).astype(np.float32))
        spec = {
            "train": str(Path(tmp) / "train.npy"),
            "test": str(Path(tmp) / "test.npy"),
            "cls": cls,
            "options": options,
            "latent_dim": args.latent_dim,
            "hidden": args.hidden,
            "seed": args.seed,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "k": args.k,
        }
        out = subprocess.run(
            [args.pythae_python, "-c", PYTHAE_WORKER.replace("{nets}", PYTHAE_NETS), json.dumps(spec)],
            capture_output=True,
            text=True,
        )
    if out.returncode:
        raise SystemExit(f"pythae {family} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


DEFAULT_SETUP = {"hidden": 512, "latent_dim": 40, "lr": 1e-3, "batch_size": 100, "seed": 0}


def row_key(row: dict) -> tuple:
    """What makes two runs the same measurement (rows stored before seeds were recorded are seed 0)."""
    setup = {**DEFAULT_SETUP, **(row.get("setup") or {})}
    return (row["family"], setup, row["epochs"], row["test"], row["k"])


def render(rows: list) -> str:
    lines = [
        "Dynamically binarized MNIST is what pythae's MIWAE/PIWAE/CIWAE rows use and a fixed binarization "
        "what its VAE/VAMP/IWAE/HVAE rows use; here both libraries get the same fixed draw of MNIST "
        "(vaecli's static binarization), the same 784-H-40 MLP (pythae's default MNIST networks have H=512), "
        "Adam, fp32 on one CPU thread each, the same seed and the same shortened budget. Test NLL in nats, "
        "importance-sampled (each library's own estimator) on the first test images. "
        "`python benchmarks/pythae_side_by_side.py` reruns a row.",
        "",
        "| family | options | network, lr, batch | seed | epochs | test images | k | vae NLL | pythae 0.1.2 NLL | vae - pythae | vae train s | pythae train s |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    order = list(FAMILIES)
    rows = sorted(
        rows, key=lambda r: (order.index(r["family"]), row_key(r)[1]["hidden"], r["epochs"], row_key(r)[1]["seed"])
    )
    gaps: dict = {}
    for r in rows:
        opts = ", ".join(f"{k}={v}" for k, v in FAMILIES[r["family"]][0].items()) or "-"
        setup = row_key(r)[1]
        net = f"784-{setup['hidden']}-{setup['latent_dim']}, {setup['lr']:g}, batch {setup['batch_size']}"
        gap = r["vae"]["nll"] - r["pythae"]["nll"]
        gaps.setdefault((r["family"], net, r["epochs"]), []).append(gap)
        lines.append(
            f"| {r['family']} | {opts} | {net} | {setup['seed']} | {r['epochs']} | {r['test']} | {r['k']} | "
            f"{r['vae']['nll']:.2f} | {r['pythae']['nll']:.2f} | {gap:+.2f} | {r['vae']['train_s']:.0f} | "
            f"{r['pythae']['train_s']:.0f} |"
        )
    lines += [
        "",
        "Per family and setting, the mean difference over seeds, and pythae's published figure (its full "
        "budget: 500 to 3280 epochs, on the networks of each paper), the target rather than a comparison:",
        "",
        "| family | network, lr, batch | epochs | seeds | mean vae - pythae | pythae published (full budget) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for (family, net, epochs), g in gaps.items():
        lines.append(f"| {family} | {net} | {epochs} | {len(g)} | {sum(g) / len(g):+.2f} | {FAMILIES[family][3]:.2f} |")
    lines += ["", f"Machine: {rows[0]['machine']}." if rows else ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--pythae-python", required=True, help="the python of a venv with pythae==0.1.2")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--latent-dim", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0, help="seed of both runs (initialisation, order)")
    parser.add_argument("--hidden", type=int, default=512, help="hidden units (pythae's default MNIST MLP: 512)")
    parser.add_argument("--test", type=int, default=1000, help="test images for the NLL")
    parser.add_argument("-k", type=int, default=5000, help="importance samples")
    parser.add_argument("--write", action="store_true", help="rewrite the section of RESULTS.md")
    parser.add_argument(
        "--only", choices=("both", "vae", "pythae"), default="both", help="rerun one side, the other from the store"
    )
    parser.add_argument(
        "--store", type=Path, default=STORE, help="the JSON file of all runs (default: beside this script)"
    )
    args = parser.parse_args()

    sys.path.insert(0, str(HERE))
    from train_speed import machine, write_section

    store = args.store
    rows = json.loads(store.read_text()) if store.exists() else []
    train, test = data(args.data_dir, args.test)
    for family in args.families:
        setup = {
            "hidden": args.hidden,
            "latent_dim": args.latent_dim,
            "lr": args.lr,
            "batch_size": args.batch_size,
            "seed": args.seed,
        }
        key = (family, setup, args.epochs, args.test, args.k)
        same = [r for r in rows if row_key(r) == key]
        if args.only == "pythae" and same:  # the vae side measured earlier, in the same setting
            ours = same[0]["vae"]
        else:
            ours = run_vaecli(family, args, test)
            print(f"{family}: vae NLL {ours['nll']:.2f} ({ours['train_s']:.0f} s training)", flush=True)
        if args.only == "vae" and same:
            theirs = same[0]["pythae"]
        else:
            theirs = run_pythae(family, args, train, test)
            print(f"{family}: pythae NLL {theirs['nll']:.2f} ({theirs['train_s']:.0f} s training)", flush=True)
        row = {
            "family": family,
            "setup": setup,
            "epochs": args.epochs,
            "test": args.test,
            "k": args.k,
            "vae": ours,
            "pythae": theirs,
            "machine": machine("cpu"),
        }
        rows = [r for r in rows if row_key(r) != key] + [row]
        store.write_text(json.dumps(rows, indent=1) + "\n")
    print(render(rows))
    if args.write:
        write_section(TITLE, render(rows))


if __name__ == "__main__":
    main()
