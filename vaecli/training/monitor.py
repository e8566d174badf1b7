"""What training leaves besides the checkpoint: ``metrics.jsonl``, pictures of each epoch and
their animation (``--viz-dir``), TensorBoard logs (``--tensorboard``), the best checkpoint
(``--keep-best``) and an MLflow run (``--mlflow``).

Each monitor is told of every completed epoch after its checkpoint is on disk, and closed once
at the end (also after Ctrl-C or a failure: ``completed`` False), so that the pictures of the
epochs that finished are never lost. Monitors draw their own noise from fixed seeds: they never touch the training RNG.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from .. import viz
from ..checkpoint import atomic_write
from ..errors import UsageError, VaeError
from ..header import fmt_scores

PICTURES = ("recon", "samples", "latent")
MAX_FRAMES = 200  # training.gif keeps every k-th epoch beyond this, k doubling as needed
RECON_IMAGES = 32  # fixed test inputs shown with their reconstructions (4 rows of 8, each over its own)
PRIOR_IMAGES = 64  # fixed prior draws decoded each epoch
SCATTER_POINTS = 2000
SCATTER_LIMIT = 4.0  # fixed axes, so that frames of the animation line up


def start(trainer, data) -> list:
    """The monitors a run asks for (on the process that writes the checkpoint): the metrics log
    always; the best checkpoint, pictures, TensorBoard and MLflow where asked for."""
    from . import keep, tracking

    config, path, model = trainer.config, trainer.path, trainer.model
    monitors: list = [MetricsLog(path, earlier=tuple(trainer.metrics))]
    if config.keep_best:
        monitors.append(keep.BestCheckpoint(path, trainer.metrics))
    mlflow = config.mlflow or bool(config.mlflow_uri)
    if not (config.viz_dir or config.tensorboard or mlflow):
        return monitors
    test_labels = trainer.labels[1]
    pictures = EpochPictures(
        model,
        trainer.test[0],
        test_labels if test_labels is not None else data.splits.test.labels,
        data.splits.class_names,
        config.seed,
        conditional=bool(model.num_classes),
    )
    if config.viz_dir:
        monitors.append(TrainingPictures(Path(config.viz_dir), pictures, model.latent_dim))
    if config.tensorboard:
        monitors.append(TensorBoardLog(Path(config.tensorboard), pictures))
    if mlflow:
        earlier = trainer.meta.get("mlflow") or {}
        uri = earlier.get("uri") or tracking.store_uri(config.mlflow_uri, path)
        log = tracking.MlflowLog(uri, path, trainer.meta, pictures, earlier.get("run_id"))
        trainer.meta["mlflow"] = {"uri": uri, "run_id": log.run_id}  # a resume logs into the same MLflow run
        monitors.append(log)
    return monitors


def metrics_path(checkpoint: Path) -> Path:
    """``run.safetensors`` -> ``run.metrics.jsonl`` beside it."""
    return checkpoint.with_name(f"{checkpoint.stem}.metrics.jsonl")


class MetricsLog:
    """One JSON line per completed epoch, beside the checkpoint; readable while training runs
    (``tail -f``). Each line is appended with one ``write`` after the epoch's checkpoint is on
    disk, so a killed run leaves whole lines only: the checkpoint's epochs, or one fewer when the
    kill fell between the two writes. A resumed run first puts the log back in step with its
    checkpoint (one atomic rewrite). A fresh run starts the file when its first epoch is saved,
    so that a run that stops earlier leaves the log of an earlier run as it was."""

    label = "metrics log"

    def __init__(self, checkpoint: Path, earlier: tuple = ()) -> None:
        """``earlier``: the records of the epochs a resumed run already has."""
        self.path = metrics_path(checkpoint)
        self.started = False
        if earlier:
            if self._lines() != [json.dumps(r) for r in earlier]:
                self._rewrite(list(earlier))
            self.started = True

    def _lines(self) -> Any:
        try:
            return self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return None

    def _rewrite(self, records: list) -> None:
        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in records).encode())

    def epoch_end(self, epoch: int, model, record: dict) -> None:
        if not self.started:
            self._rewrite([record])
            self.started = True
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, (json.dumps(record) + "\n").encode())  # one write: whole or not at all
        finally:
            os.close(fd)

    def close(self, completed: bool = True) -> None:
        pass


class EpochPictures:
    """The fixed test inputs and prior draws that every epoch's pictures are made from, drawn
    once per epoch and shared by the monitors that show them."""

    def __init__(self, model, test_images, labels, class_names, seed: int, conditional: bool = False) -> None:
        """``test_images`` as the model sees them (binarized where it is); ``labels`` colour the
        scatter, and condition the encoder and decoder of a ``conditional`` model (a cvae)."""
        gen = torch.Generator().manual_seed(seed)
        labels = None if labels is None else labels.cpu()
        self.recon_inputs = test_images[:RECON_IMAGES]
        self.prior = torch.randn(PRIOR_IMAGES, model.latent_dim, generator=gen)
        pick = torch.randperm(len(test_images), generator=gen)[:SCATTER_POINTS]
        self.scatter_inputs = test_images[pick.to(test_images.device)]
        self.scatter_labels = None if labels is None else labels[pick]
        self.recon_labels = labels[:RECON_IMAGES] if conditional else None
        self.condition = self.scatter_labels if conditional else None
        self.class_names = class_names
        self._drawn: tuple = (None, None)  # (epoch, pictures)

    def pictures(self, epoch: int, model) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstructions grid, samples grid, posterior means of the scatter inputs)."""
        if self._drawn[0] != epoch:
            self._drawn = (epoch, self._draw(model))
        return self._drawn[1]

    @torch.inference_mode()
    def _draw(self, model) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        was_training = model.training
        model.eval()
        originals = model.prepare(self.recon_inputs)
        recon = model.reconstruct(self.recon_inputs, labels=self.recon_labels)
        recon_grid = viz.grid(viz.above(originals, recon, 8), nrow=8)
        classes = (torch.arange(len(self.prior)) % 8 % model.num_classes) if model.num_classes else None
        samples_grid = viz.grid(model.decode(self.prior.to(model.device), labels=classes), nrow=8)  # a column per class
        mean, _ = model.encode(self.scatter_inputs, self.condition)
        model.train(was_training)
        return recon_grid, samples_grid, mean.float().cpu()


def check_folder(folder: Path, flag: str) -> Path:
    """A folder that exists and is writable, or can be made in a writable parent."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{flag} {folder} is a file; give a folder")
    if not folder.parent.is_dir():
        raise UsageError(f"{flag} {folder}: the folder {folder.parent} does not exist")
    target = folder if folder.is_dir() else folder.parent
    if not os.access(target, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {folder}: the folder {target} is not writable")
    return folder


def check_viz_dir(folder: Path, force: bool) -> None:
    """Before training: ``--viz-dir`` can be made, and holds no pictures of another run unless
    ``force``."""
    folder = check_folder(folder, "--viz-dir")
    used = folder.is_dir() and (
        any(folder.glob(f"{kind}-*.png") for kind in PICTURES) or (folder / "training.gif").exists()
    )
    if used and not force:
        raise UsageError(
            f"--viz-dir {folder} already holds pictures of a run; pass --force to "
            f"overwrite them, or choose another folder"
        )


class TrainingPictures:
    """``--viz-dir DIR``: per epoch ``recon-NNN.png``, ``samples-NNN.png``, ``latent-NNN.png``;
    at the end ``training.gif``, one frame per epoch with the three side by side."""

    label = "--viz-dir pictures"

    def __init__(self, folder: Path, fixed: EpochPictures, latent_dim: int) -> None:
        self.folder = Path(folder).expanduser()
        self.folder.mkdir(exist_ok=True)
        self.fixed = fixed
        self.latent_dim = latent_dim
        self.frames: list = []  # every ``stride``-th epoch
        self.stride = 1
        self.last: Any = None  # (epoch, frame) of the latest epoch, always the animation's end

    def epoch_end(self, epoch: int, model, record: dict) -> None:
        from PIL import Image

        from ..latents import pca

        recon_grid, samples_grid, mean = self.fixed.pictures(epoch, model)
        paths = [self.folder / f"{kind}-{epoch:03d}.png" for kind in PICTURES]
        viz.save_image(recon_grid, paths[0])
        viz.save_image(samples_grid, paths[1])
        if self.latent_dim >= 2:
            if self.latent_dim == 2:
                points, axes = mean, ("z0", "z1")
            else:
                points, _ = pca(mean)
                axes = ("PC1", "PC2")
            viz.scatter(
                points,
                paths[2],
                title=f"Posterior means, epoch {epoch}",
                xlabel=axes[0],
                ylabel=axes[1],
                labels=self.fixed.scatter_labels,
                class_names=self.fixed.class_names,
                limits=SCATTER_LIMIT,
            )
        pictures = [viz.to_pil(recon_grid), viz.to_pil(samples_grid)]
        captions = ["test inputs over their reconstructions", "decoded fixed prior draws"]
        if self.latent_dim >= 2:
            with Image.open(paths[2]) as img:
                pictures.append(img.convert("RGB"))
            captions.append("latent space")
        header = f"epoch {epoch}   {fmt_scores(record)}"
        frame = viz.panels(pictures, captions, header)
        self.last = (epoch, frame)
        if (epoch - 1) % self.stride == 0:
            self.frames.append((epoch, frame))
            if len(self.frames) >= MAX_FRAMES:  # bounded memory for long runs
                self.frames, self.stride = self.frames[::2], self.stride * 2

    def close(self, completed: bool = True) -> None:
        if self.last is None:
            return
        frames = [f for e, f in self.frames if e != self.last[0]] + [self.last[1]]
        # hold the last epoch a while before looping
        viz.save_gif(frames, self.folder / "training.gif", frame_ms=600, last_ms=2500)


class TensorBoardLog:
    """``--tensorboard DIR``: the metrics as scalars and the epoch's pictures as images."""

    label = "--tensorboard log"

    def __init__(self, folder: Path, fixed: EpochPictures) -> None:
        self.writer = summary_writer()(log_dir=str(Path(folder).expanduser()))
        self.fixed = fixed

    def epoch_end(self, epoch: int, model, record: dict) -> None:
        for key, value in record.items():
            if key != "epoch":
                group, _, name = key.partition("_")  # train_nelbo -> train/nelbo
                self.writer.add_scalar(f"{group}/{name}" if name else f"epoch/{key}", value, epoch)
        recon_grid, samples_grid, _ = self.fixed.pictures(epoch, model)
        self.writer.add_image("reconstructions", recon_grid, epoch)
        self.writer.add_image("samples", samples_grid, epoch)
        self.writer.flush()

    def close(self, completed: bool = True) -> None:
        self.writer.close()


def summary_writer():
    """TensorBoard's SummaryWriter class, or a one-line error when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UsageError(
            "--tensorboard needs the tensorboard package: pip install 'vaecli[tensorboard]' "
            "(or pip install tensorboard)"
        ) from None
    return SummaryWriter


def guarded(call, m, reporter, *args) -> bool:
    """Run a monitor's method; a failure to write is a warning, not the end of training."""
    try:
        call(*args)
        return True
    except (OSError, VaeError) as exc:
        reporter.warn(
            f"could not write the {m.label}: {getattr(exc, 'strerror', None) or exc}; training goes on without it"
        )
        return False
