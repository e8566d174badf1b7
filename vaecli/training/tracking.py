"""``--mlflow``: the run logged to MLflow (parameters, per-epoch metrics, pictures, the final
checkpoint), through MLflow's own client, imported only when asked for.

The default store is an SQLite file beside the checkpoint (``mlflow.db``, its artifacts in
``mlartifacts/``), what ``mlflow ui --backend-store-uri sqlite:///mlflow.db`` opens. The MLflow
run's id is recorded in the checkpoint, so ``vae train --resume`` goes on logging into the same
MLflow run. Failures to log are warnings (training goes on without the log)."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from .. import viz
from ..errors import UsageError, VaeError, first_line

__all__ = ["require", "store_uri", "MlflowLog", "INSTALL"]

INSTALL = "pip install 'vaecli[mlflow]'"
EXPERIMENT = "vae"  # unless MLFLOW_EXPERIMENT_NAME says otherwise
MAX_PARAM = 6000  # characters MLflow keeps of a parameter's value


def require() -> Any:
    """The ``mlflow`` module, or a one-line error naming the install."""
    try:
        import mlflow
    except ImportError:
        raise UsageError(f"--mlflow needs MLflow: {INSTALL} (or pip install mlflow)") from None
    return mlflow


def store_uri(uri: Optional[str], checkpoint: Path) -> str:
    """The tracking store: ``uri``, else $MLFLOW_TRACKING_URI, else ``mlflow.db`` beside the
    checkpoint. A plain path is an SQLite file (.db) or a folder store."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if not uri:
        return "sqlite:///" + str((checkpoint.parent / "mlflow.db").resolve())
    if "://" not in uri and not uri.startswith(("file:", "databricks")):
        path = Path(uri).expanduser().resolve()
        return "sqlite:///" + str(path) if path.suffix == ".db" else path.as_uri()
    return uri


def flat_params(settings: dict, prefix: str = "") -> dict[str, str]:
    """``{"arch_options": {"hidden": [512]}}`` -> ``{"arch_options.hidden": "[512]"}`` (values as JSON)."""
    out: dict[str, str] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flat_params(value, f"{name}."))
        else:
            out[name] = (value if isinstance(value, str) else json.dumps(value, default=str))[:MAX_PARAM]
    return out


class MlflowLog:
    """A training monitor: one MLflow run per vae run. Parameters once (the run's settings, the
    model, the data set), every number of each epoch's record as a metric at step = epoch, the
    epoch's reconstructions and prior samples as ``pictures/`` artifacts, and at the end the
    checkpoint (``checkpoint/``) and its metrics log."""

    label = "MLflow log"

    def __init__(self, uri: str, checkpoint: Path, meta: dict, fixed, run_id: Optional[str] = None) -> None:
        """``meta``: the checkpoint's metadata (settings, model, data); ``fixed``: the
        ``EpochPictures`` shared with the other monitors; ``run_id``: the MLflow run of the run
        being resumed."""
        mlflow = require()
        for name in ("mlflow", "alembic"):  # its INFO lines (creating tables, migrations) are not ours to print
            logging.getLogger(name).setLevel(logging.WARNING)
        self.uri, self.checkpoint, self.fixed = uri, Path(checkpoint), fixed
        try:
            self.client = mlflow.MlflowClient(tracking_uri=uri)
            self.run_id = self._resumed(run_id) or self._start(meta)
        except VaeError:
            raise
        except Exception as exc:  # an unusable store: one line, before any epoch
            raise UsageError(f"--mlflow: cannot use the tracking store {uri}: {first_line(exc)}") from None
        self.folder = Path(tempfile.mkdtemp(prefix="vae-mlflow-"))

    def _resumed(self, run_id: Optional[str]) -> Optional[str]:
        if not run_id:
            return None
        try:
            self.client.get_run(run_id)
        except Exception:
            return None  # the store no longer holds it: a new MLflow run
        self.client.update_run(run_id, status="RUNNING")
        return run_id

    def _start(self, meta: dict) -> str:
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            location = None
            if self.uri.startswith("sqlite:///"):  # artifacts beside the database, not in the current folder
                location = (Path(self.uri[len("sqlite:///") :]).parent / "mlartifacts").resolve().as_uri()
            experiment_id = self.client.create_experiment(name, artifact_location=location)
        settings = dict(meta["training"])
        for key in ("out", "force", "recipe"):
            settings.pop(key, None)
        params = flat_params(settings)
        params.update(flat_params({"model": meta["model"], "dataset": meta["data"].get("dataset", {})}))
        tags = {"mlflow.runName": self.checkpoint.stem, "vaecli.checkpoint": str(self.checkpoint.resolve())}
        run = self.client.create_run(experiment_id, tags=tags)
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 parameters a call
            self.client.log_batch(run.info.run_id, params=items[i : i + 100])
        return str(run.info.run_id)

    def epoch_end(self, epoch: int, model, record: dict) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, epoch)
            for key, value in record.items()
            if key != "epoch" and isinstance(value, (int, float))
        ]
        recon_grid, samples_grid, _ = self.fixed.pictures(epoch, model)
        paths = [self.folder / f"recon-{epoch:03d}.png", self.folder / f"samples-{epoch:03d}.png"]
        viz.save_image(recon_grid, paths[0])
        viz.save_image(samples_grid, paths[1])
        self._call(self.client.log_batch, self.run_id, metrics=metrics)
        for path in paths:
            self._call(self.client.log_artifact, self.run_id, str(path), "pictures")
            path.unlink()

    def close(self, completed: bool = True) -> None:
        """The checkpoint and its metrics log as artifacts; the MLflow run FINISHED, or KILLED
        when the vae run stopped before its last epoch (a resume reopens it)."""
        from .monitor import metrics_path

        try:
            for path in (self.checkpoint, metrics_path(self.checkpoint)):
                if path.exists():
                    self._call(self.client.log_artifact, self.run_id, str(path), "checkpoint")
        finally:
            self._call(self.client.set_terminated, self.run_id, "FINISHED" if completed else "KILLED")
            try:
                self.folder.rmdir()
            except OSError:
                pass

    def _call(self, method, *args, **kwargs) -> Any:
        """A client call; its failure a ``VaeError`` (a warning of the trainer's, not a stop)."""
        try:
            return method(*args, **kwargs)
        except Exception as exc:
            raise VaeError(f"{first_line(exc)} ({self.uri})") from None
