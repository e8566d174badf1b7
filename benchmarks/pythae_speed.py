"""Whole processes, side by side: `vae train mnist --epochs 3` against pythae 0.1.2.

What a user waits for, from typing the command to getting the prompt back: start-up, reading
MNIST, three epochs with a test pass after each, writing the model. Each side runs in a process of
its own, alternating (pythae, vae, vae --precision fp32, pythae, ...) so that a slow spell of the
machine hits all of them, ``--rounds`` times; the table gives the median wall time, the test
loss after the last epoch and the process's peak resident memory (``ru_maxrss`` of the child).

- vae: the command as typed, its defaults (784-400-20 MLP, Bernoulli on grey levels, batch 128,
  Adam 1e-3, ``--precision auto``: bf16 mixed precision where the CPU has it), and once more with
  ``--precision fp32``, pythae's arithmetic;
- pythae: what its documentation shows a user (torchvision's MNIST, ``TrainingPipeline`` with a
  ``BaseTrainerConfig``), on the same network (pythae's MLP with 400 units), BCE, batch 128,
  Adam 1e-3, the test images as its eval set (it evaluates after each epoch), in its own venv
  (``--pythae-python``). Its test loss is the mean loss of the eval set after the last epoch.

Both test losses are the negative ELBO per image in nats with one posterior sample.

    python benchmarks/pythae_speed.py --data-dir ../shared/data \\
        --pythae-python /tmp/pythae-venv/bin/python --write
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pythae_side_by_side import PYTHAE_NETS  # noqa: E402

TITLE = "## Whole process against pythae 0.1.2: `vae train mnist --epochs 3`, CPU"

PYTHAE_WORKER = r"""
import json, sys, tempfile
spec = json.loads(sys.argv[1])
import torch, torchvision
from torch import nn
from pythae.models import VAE, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.pipelines import TrainingPipeline
from pythae.trainers import BaseTrainerConfig
torch.manual_seed(spec["seed"])
train = torchvision.datasets.MNIST(spec["data_dir"], train=True, download=False).data[:, None].float() / 255
test = torchvision.datasets.MNIST(spec["data_dir"], train=False, download=False).data[:, None].float() / 255
{nets}
model = VAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=spec["latent_dim"], reconstruction_loss="bce"),
            encoder=Encoder(), decoder=Decoder())
with tempfile.TemporaryDirectory() as tmp:
    config = BaseTrainerConfig(output_dir=tmp, num_epochs=spec["epochs"], learning_rate=1e-3,
                               per_device_train_batch_size=128, per_device_eval_batch_size=128,
                               steps_saving=None, no_cuda=True)
    TrainingPipeline(model=model, training_config=config)(train_data=train, eval_data=test)
model.eval()
with torch.no_grad():
    loss = sum(model({"data": test[i:i + 1000]}).loss.item() * len(test[i:i + 1000])
               for i in range(0, len(test), 1000)) / len(test)
print(json.dumps({"test_nelbo": loss}))
"""


def run(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak resident MB and stdout of ``cmd``, measured by /usr/bin/time when it
    is there (the child's own ru_maxrss), else by the wall clock only."""
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as report:
        wrapper = ["/usr/bin/time", "-f", "%M", "-o", report.name] if os.path.exists("/usr/bin/time") else []
        start = time.perf_counter()
        proc = subprocess.run([*wrapper, *cmd], capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{proc.stderr[-3000:]}")
        text = report.read().strip().splitlines()
        peak = int(text[-1]) / 1024 if wrapper and text else float("nan")
    return wall, peak, proc.stdout


def vae_run(args, tmp: str, precision: str) -> dict:
    out = Path(tmp) / f"vae-{precision}.safetensors"
    vae = shutil.which("vae") or "vae"
    cmd = [vae, "train", "mnist", "--epochs", str(args.epochs), "--data-dir", args.data_dir, "--no-download"]
    cmd += ["--precision", precision, "--seed", str(args.seed), "-o", str(out), "--force"]
    wall, peak, _ = run(cmd)
    import vaecli

    metrics = vaecli.metadata(out)["metrics"]
    return {"wall_s": wall, "peak_mb": peak, "test_nelbo": metrics[-1]["test_nelbo"]}


def pythae_run(args) -> dict:
    spec = {"data_dir": args.data_dir, "epochs": args.epochs, "seed": args.seed, "hidden": 400, "latent_dim": 20}
    code = PYTHAE_WORKER.replace("{nets}", PYTHAE_NETS)
    wall, peak, out = run([args.pythae_python, "-c", code, json.dumps(spec)])
    return {"wall_s": wall, "peak_mb": peak, **json.loads(out.strip().splitlines()[-1])}


def import_torch_s(python: str) -> float:
    start = time.perf_counter()
    subprocess.run([python, "-c", "import torch"], check=True)
    return time.perf_counter() - start


def render(runs: dict, args, torch_s: list) -> str:
    from train_speed import machine

    base = statistics.median(r["wall_s"] for r in runs["pythae"])
    lines = [
        f"Machine: {machine('cpu')}. {args.rounds} alternating rounds; median wall time of each "
        f"whole process (start-up, data, {args.epochs} epochs with their test passes, saving), test "
        "-ELBO after the last epoch (nats per image, one posterior sample), peak resident memory of "
        f'the process. `python -c "import torch"` took {statistics.median(torch_s):.2f} s (median) '
        "in the same run.",
        "",
        "| run | wall s (median) | each round | speed-up over pythae | test -ELBO | peak memory (MB) |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for name, label in (
        ("pythae", "pythae 0.1.2 TrainingPipeline"),
        ("auto", "vae train mnist"),
        ("fp32", "vae train mnist --precision fp32"),
    ):
        rs = runs[name]
        wall = statistics.median(r["wall_s"] for r in rs)
        each = ", ".join(f"{r['wall_s']:.1f}" for r in rs)
        lines.append(
            f"| {label} | {wall:.2f} | {each} | {base / wall:.2f}x | "
            f"{statistics.median(r['test_nelbo'] for r in rs):.2f} | {max(r['peak_mb'] for r in rs):.0f} |"
        )
    lines += [
        "",
        f"Command: `python benchmarks/pythae_speed.py --data-dir DIR --pythae-python PY --epochs {args.epochs} "
        f"--rounds {args.rounds}`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--pythae-python", required=True, help="the python of a venv with pythae==0.1.2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="rewrite the section of RESULTS.md")
    args = parser.parse_args()

    runs: dict = {"pythae": [], "auto": [], "fp32": []}
    torch_s = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            torch_s.append(import_torch_s(sys.executable))
            runs["pythae"].append(pythae_run(args))
            runs["auto"].append(vae_run(args, tmp, "auto"))
            runs["fp32"].append(vae_run(args, tmp, "fp32"))
            print(
                f"round {round_ + 1}: "
                + ", ".join(f"{k} {v[-1]['wall_s']:.1f} s ({v[-1]['test_nelbo']:.2f})" for k, v in runs.items()),
                flush=True,
            )
    text = render(runs, args, torch_s)
    print(text)
    (HERE / "pythae_speed.json").write_text(json.dumps({"runs": runs, "import_torch_s": torch_s}, indent=1) + "\n")
    if args.write:
        from train_speed import write_section

        write_section(TITLE, text)


if __name__ == "__main__":
    main()
