"""Start-up: a command imports only what that call uses. Checked by the modules loaded after the
command ran in a fresh process, not by timing (speed is measured in benchmarks/inference.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import TINY_CLI
from vaecli import checkpoint, header, viz

HEAVY = ("torch", "torchvision", "torch._dynamo", "matplotlib", "sklearn", "scipy")


def _loaded_after(*args: str) -> set:
    code = (
        "import json, sys\n"
        "from vaecli.cli import run\n"
        f"sys.argv = ['vae', *{list(map(str, args))!r}]\n"
        "try:\n    run()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("args", [("--help",), ("train", "--help"), ("plugins",), ("recipes",)])
def test_help_and_listings_import_no_torch(args):
    assert _loaded_after(*args) == set()


def test_info_reads_the_header_without_torch(tiny_ckpt):
    assert _loaded_after("info", tiny_ckpt) == set()
    assert _loaded_after("info", tiny_ckpt, "--json") == set()


def test_sample_imports_torch_only(tiny_ckpt, tmp_path):
    assert _loaded_after("sample", tiny_ckpt, "-n", "4", "-o", tmp_path / "s.png") == {"torch"}


def test_training_and_resuming_never_import_the_compiler(tmp_path):
    """torch.optim's first call imports torch._dynamo (about 2 s) unless, as here, the
    optimizer's methods skip it; and nothing draws a picture or fetches a dataset."""
    out = tmp_path / "t.safetensors"
    assert _loaded_after("train", "shapes", *TINY_CLI, "--epochs", "1", "-o", out) == {"torch"}
    assert _loaded_after("train", "--resume", out, "--epochs", "2") == {"torch"}


@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_the_optimizer_steps_exactly_as_torchs(kind):
    from vaecli.config import TrainConfig
    from vaecli.training.optim import make_optimizer

    def trained(make):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
        opt = make(net.parameters())
        for step in range(3):
            opt.zero_grad()
            net(torch.randn(8, 5, generator=torch.Generator().manual_seed(step))).square().sum().backward()
            opt.step()
        return [p.detach().clone() for p in net.parameters()], opt.state_dict()

    config = TrainConfig(optimizer=kind, lr=0.01)
    ours, ours_state = trained(lambda params: make_optimizer(config, params, torch.device("cpu")))
    torch_cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    decay = 0.01 if kind == "adamw" else 0.0
    theirs, theirs_state = trained(lambda params: torch_cls(params, lr=0.01, weight_decay=decay, fused=True))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert ours_state["param_groups"] == theirs_state["param_groups"]
    assert ours[0].abs().sum() > 0 and not torch.equal(ours[0], trained(lambda p: torch_cls(p, lr=0.02))[0][0])


def test_the_header_is_what_reading_the_tensors_says(tiny_ckpt):
    meta, entries = header.read_header(tiny_ckpt)
    ckpt = checkpoint.read(tiny_ckpt)
    assert meta == ckpt.meta
    assert {n: (e[1]) for n, e in entries.items()} == {n: tuple(t.shape) for n, t in ckpt.tensors.items()}
    assert header.describe(tiny_ckpt)["parameters"] == sum(t.numel() for t in ckpt.section("model.").values())


@pytest.mark.parametrize(
    ("n", "c", "nrow", "pad", "value"),
    [(1, 1, 3, 2, 0.5), (2, 3, 3, 2, 0.5), (7, 1, 3, 1, 1.0), (9, 3, 3, 4, 0.5), (10, 1, 4, 2, 0.0)],
)
def test_tile_lays_out_images_as_torchvisions_make_grid(n, c, nrow, pad, value):
    from torchvision.utils import make_grid

    images = torch.rand(n, c, 5, 7, generator=torch.Generator().manual_seed(n))
    assert torch.equal(viz.tile(images, nrow, pad, value), make_grid(images, nrow=nrow, padding=pad, pad_value=value))
