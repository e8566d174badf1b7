"""Start-up: a command imports only what that call uses. Checked by the modules loaded after the
command ran in a fresh process, not by timing (speed is measured in benchmarks/inference.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from vaecli import checkpoint, header, viz

HEAVY = ("torch", "torchvision", "torch._dynamo", "matplotlib", "sklearn", "scipy")


def _loaded_after(*args: str) -> set:
    code = (
        "import json, sys\n"
        "from vaecli.cli import main\n"
        f"sys.argv = ['vae', *{list(map(str, args))!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
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
