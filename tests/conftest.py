"""Shared fixtures: tiny synthetic data (shapes at 8x8), a tiny trained checkpoint, a CLI runner."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

import vaecli
from vaecli import plugins

# The core's tests see the built-ins only, whatever plugins this environment has installed (the
# packages in plugins/ run their own tests); set before collection, which asks the registry.
# tests/test_plugins.py installs its own plugins into tmp_path.
os.environ["VAECLI_LOAD_PLUGINS"] = ""

# A few dozen 8x8 shapes: trains in well under a second.
TINY_DATA = {"n_train": 96, "n_test": 48, "size": 8}
TINY_ARCH = {"hidden": (32,)}
TINY_CLI = [
    "--data-option",
    "n_train=96",
    "--data-option",
    "n_test=48",
    "--data-option",
    "size=8",
    "--arch-option",
    "hidden=32",
    "--latent-dim",
    "3",
    "--batch-size",
    "32",
    "--device",
    "cpu",
]


def tiny_run(**settings) -> dict:
    """``vaecli.train``'s settings of TINY_CLI (fresh dicts each call), updated by ``settings``."""
    return {
        "dataset": "shapes",
        "dataset_options": dict(TINY_DATA),
        "arch_options": dict(TINY_ARCH),
        "latent_dim": 3,
        "batch_size": 32,
        "device": "cpu",
        **settings,
    }


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Every test runs in its own empty folder, with no debug mode, a fresh plugin registry and
    its own data folder (where the data cache of folder: and tensor: datasets goes)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAECLI_DATA_DIR", str(tmp_path / ".vae-data"))
    monkeypatch.delenv("VAECLI_DEBUG", raising=False)
    plugins.reset()
    yield
    plugins.reset()


@pytest.fixture(scope="module")
def one_thread():
    """For modules of many tiny models: one thread is faster, and immune to a busy second core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """A checkpoint trained for 2 epochs on tiny shapes (latent 3, one hidden layer of 32)."""
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    vaecli.train(
        dataset="shapes",
        dataset_options=dict(TINY_DATA),
        arch_options=dict(TINY_ARCH),
        latent_dim=3,
        epochs=2,
        batch_size=32,
        device="cpu",
        out=str(path),
    )
    return path


@pytest.fixture
def vae():
    """``vae(*args)`` invokes the CLI in-process and returns click's Result (``.exit_code``,
    ``.stdout``, ``.stderr``, ``.output``)."""
    from vaecli.cli import app

    runner = CliRunner()

    def invoke(*args, **kwargs):
        return runner.invoke(app, [str(a) for a in args], **kwargs)

    return invoke


def one_line_error(result, code: int, *needles: str) -> str:
    """Exit ``code``, no traceback, exactly one non-empty stderr line, ``error: ...`` with every
    needle in it, and nothing on stdout."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert not result.stdout.strip(), result.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def ends_in_error(result, code: int, *needles: str) -> str:
    """Exit ``code``, no traceback, and one ``error: ...`` line with every needle in it, the last
    thing said on stderr (after whatever a run printed before it failed, such as `vae train`'s
    epochs)."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]
