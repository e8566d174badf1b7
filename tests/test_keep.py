"""--early-stop and --keep-best: decided from the test losses of the epochs, so that a resumed
run decides as the uninterrupted one would."""

from __future__ import annotations

import pytest

import vaecli
from conftest import tiny_run
from vaecli.training import keep, trainer


def _records(*losses):
    return [{"epoch": i + 1, "test_nelbo": v} for i, v in enumerate(losses)]


@pytest.mark.parametrize(
    "losses, patience, stops",
    [
        ((5, 4, 4.5, 4.2), 2, True),  # best after epoch 2, two epochs without better
        ((5, 4, 4.5, 3.9), 2, False),
        ((5, 4, 4.0), 1, True),  # equal is not better
        ((5, 4), 0, False),  # 0: never
        ((), 3, False),
    ],
)
def test_stalled(losses, patience, stops):
    assert bool(keep.stalled(_records(*losses), patience)) is stops


def test_the_family_objective_counts_where_there_is_no_elbo():
    assert keep.best([{"epoch": 1, "test_objective": 3.0}, {"epoch": 2, "test_objective": 2.0}]) == (2, 2.0)


@pytest.fixture
def scripted(monkeypatch):
    """The test pass reports these negative ELBOs, one per epoch (the training is real)."""
    losses = iter([5.0, 4.0, 4.5, 4.2, 3.0, 2.0, 1.0])
    real = trainer.test_pass
    monkeypatch.setattr(trainer, "test_pass", lambda *a, **k: {**real(*a, **k), "nelbo": next(losses)})


def test_early_stop_and_keep_best(tmp_path, scripted):
    out = tmp_path / "k.safetensors"
    result = vaecli.train(**tiny_run(epochs=7, early_stop=2, keep_best=True, out=str(out)))
    assert [m["epoch"] for m in result.metrics] == [1, 2, 3, 4]  # stopped before epoch 5
    kept = keep.best_path(out)
    assert vaecli.metadata(kept)["epoch"] == 2 and vaecli.metadata(out)["epoch"] == 4
    assert vaecli.load(kept).latent_dim == 3
    again = vaecli.resume(out, epochs=10)  # still stalled: no epoch is trained
    assert [m["epoch"] for m in again.metrics] == [1, 2, 3, 4]


def test_keep_best_follows_improvements_across_a_resume(tmp_path, scripted):
    out = tmp_path / "k.safetensors"
    vaecli.train(**tiny_run(epochs=3, keep_best=True, out=str(out)))
    assert vaecli.metadata(keep.best_path(out))["epoch"] == 2
    vaecli.resume(out, epochs=5)  # epochs 4 (4.2) and 5 (3.0): 5 is the best
    assert vaecli.metadata(keep.best_path(out))["epoch"] == 5


def test_ema_averages_the_weights_that_are_tested_and_saved(tmp_path):
    """With --ema the checkpoint's model is the average (its test loss is what vae evaluate
    finds), the live weights ride along for resuming, and the average is not the live weights."""
    import torch

    from vaecli import checkpoint

    out = tmp_path / "e.safetensors"
    result = vaecli.train(**tiny_run(epochs=2, ema=0.9, precision="fp32", out=str(out)))
    tensors = checkpoint.read(out).tensors
    live = {k[len("ema.live.") :]: v for k, v in tensors.items() if k.startswith("ema.live.")}
    assert live and int(tensors["ema.updates"]) == 2 * 3  # 96 images in batches of 32, two epochs
    assert any(not torch.equal(tensors[f"model.{k}"], v) for k, v in live.items())
    model = vaecli.load(out)
    found = model.evaluate(vaecli.read_inputs("shapes:test", model))
    assert found["nelbo"] == pytest.approx(result.metrics[-1]["test_nelbo"], rel=1e-6)
