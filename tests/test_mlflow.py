"""``vae train --mlflow``: the run logged into a real local MLflow store (SQLite), read back with
MLflow's own client."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import vaecli
from conftest import TINY_CLI, ends_in_error, one_line_error, tiny_run
from vaecli.checkpoint import read

TINY = tiny_run()


def _client(uri: str):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra (pip install 'vaecli[mlflow]')")
    return mlflow.MlflowClient(tracking_uri=uri)


@pytest.fixture(scope="module")
def logged(tmp_path_factory, one_thread):
    """Two epochs logged to the default store beside the checkpoint, then resumed to three."""
    pytest.importorskip("mlflow", reason="the mlflow extra (pip install 'vaecli[mlflow]')")
    pytest.importorskip("sqlalchemy", reason="MLflow's SQLite store needs sqlalchemy (the mlflow extra)")
    folder = tmp_path_factory.mktemp("mlflow")
    path = folder / "m.safetensors"
    first = vaecli.train(**TINY, epochs=2, out=str(path), mlflow=True)
    after_two = read(path).meta["metrics"]
    final = vaecli.resume(path, epochs=3)
    return folder, path, first, final, after_two


def test_the_store_is_beside_the_checkpoint_and_the_run_recorded_in_it(logged):
    folder, path, first, final, _ = logged
    tracked = read(path).meta["mlflow"]
    assert tracked["uri"] == "sqlite:///" + str((folder / "mlflow.db").resolve())
    assert (folder / "mlflow.db").is_file() and (folder / "mlartifacts").is_dir()
    assert first.model.meta["mlflow"]["run_id"] == tracked["run_id"]  # the resume logged into the same run


def test_parameters_are_the_runs_settings(logged):
    _, path, _, _, _ = logged
    tracked = read(path).meta["mlflow"]
    run = _client(tracked["uri"]).get_run(tracked["run_id"])
    params = run.data.params
    assert params["latent_dim"] == "3" and params["batch_size"] == "32" and params["lr"] == "0.001"
    assert params["dataset"] == "shapes" and params["dataset_options.n_train"] == "96"
    assert params["model.architecture.options.hidden"] == "[32]"
    assert params["epochs"] == "2"  # as the run started; the resume does not rewrite parameters
    assert run.info.run_name == "m" and run.info.status == "FINISHED"


def test_every_loss_term_of_every_epoch_is_a_metric(logged):
    _, path, _, final, after_two = logged
    tracked = read(path).meta["mlflow"]
    client = _client(tracked["uri"])
    records = final.metrics
    assert [r["epoch"] for r in records] == [1, 2, 3] and records[:2] == after_two
    for key in ("test_nelbo", "test_recon", "test_kl", "train_nelbo", "train_objective", "kl_weight", "lr"):
        history = sorted((m.step, m.value) for m in client.get_metric_history(tracked["run_id"], key))
        assert history == [(r["epoch"], pytest.approx(r[key], rel=1e-12)) for r in records], key


def test_pictures_and_the_final_checkpoint_are_artifacts(logged, tmp_path):
    _, path, _, _, _ = logged
    tracked = read(path).meta["mlflow"]
    client = _client(tracked["uri"])
    pictures = sorted(a.path for a in client.list_artifacts(tracked["run_id"], "pictures"))
    assert pictures == [f"pictures/{kind}-{e:03d}.png" for kind in ("recon", "samples") for e in (1, 2, 3)]
    local = Path(client.download_artifacts(tracked["run_id"], "checkpoint", str(tmp_path)))
    assert (local / "m.safetensors").read_bytes() == path.read_bytes()  # the last epoch's checkpoint
    assert (local / "m.metrics.jsonl").read_bytes() == path.with_name("m.metrics.jsonl").read_bytes()
    from PIL import Image

    grid = Path(client.download_artifacts(tracked["run_id"], "pictures/samples-003.png", str(tmp_path)))
    with Image.open(grid) as img:
        assert (
            img.size[0] > 8 * 8 and len(np.unique(np.asarray(img.convert("L")))) > 2
        )  # a grid of 64 drawn digits, not blank


def test_an_explicit_store_uri_is_used(tmp_path, one_thread):
    pytest.importorskip("sqlalchemy", reason="MLflow's SQLite store needs sqlalchemy (the mlflow extra)")
    client = _client("sqlite:///" + str(tmp_path / "elsewhere.db"))
    vaecli.train(**TINY, epochs=1, out="m.safetensors", mlflow_uri=str(tmp_path / "elsewhere.db"))
    assert not Path("mlflow.db").exists()
    (run,) = client.search_runs([client.get_experiment_by_name("vae").experiment_id])
    assert run.data.params["latent_dim"] == "3" and "test_nelbo" in run.data.metrics


def test_without_mlflow_installed_it_is_one_line_before_training(vae, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    one_line_error(
        vae("train", *TINY_CLI, "--epochs", "1", "-o", "m.safetensors", "--mlflow"),
        2,
        "--mlflow needs MLflow",
        "pip install 'vaecli[mlflow]'",
    )
    assert not Path("m.safetensors").exists()


def test_an_unusable_store_is_one_line(vae):
    pytest.importorskip("mlflow", reason="the mlflow extra")
    result = vae("train", *TINY_CLI, "--epochs", "1", "-o", "m.safetensors", "--mlflow-uri", "nosuchscheme://x")
    ends_in_error(result, 2, "--mlflow", "nosuchscheme://x")
