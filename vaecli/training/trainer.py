"""One training run: the data and the model on the device, the epochs, the checkpoints."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shlex
import time
from pathlib import Path
from typing import Any, Optional

import torch

from .. import checkpoint, kinds
from ..config import TrainConfig
from ..data import LoadedDataset, load_dataset
from ..device import resolve_device
from ..errors import Interrupted, Terminated, TrainingError, UsageError
from ..evaluation import test_pass
from ..factory import create_model, family_of, model_of, model_section, settle_data
from ..images import BINARIZE_SEEDS, binarize, to_unit
from ..model import accumulator_dtype
from ..options import seed64
from . import distributed, ema, keep, monitor, tracking
from .lock import RunLock, remove_stale
from .memory import batch_need, check_fits, return_large_buffers, sample_rows, weights_need
from .optim import backward, make_optimizer, parameter_groups
from .placement import place
from .precision import Compiled, MixedPrecision
from .report import Quiet, Reporter, StopSignal, TrainResult
from .resumed import resumes

CHECK_STEPS = 200  # steps between looks at the running objective for non-finite values (a host sync)


class Trainer:
    """One run, fresh or resumed from a checkpoint: the data and the model on the device, the
    epochs, and the checkpoints (after every epoch, every ``save_every`` steps, and when stopped
    by Ctrl-C). All randomness of training (batch order, the reparameterisation noise, dynamic
    binarization) comes from one generator on the device, saved with every checkpoint."""

    def __init__(
        self, config: TrainConfig, path: Path, reporter: Reporter, ckpt: Optional[checkpoint.Checkpoint] = None
    ) -> None:
        self.config, self.path, self.reporter = config, path, reporter
        self.ckpt: Any = ckpt  # None for a fresh run
        self.saved = ""  # what the checkpoint on disk holds, for messages ("" when none yet)
        self.epoch = 0  # the epoch being trained

    # -- setting up ---------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Join the other processes when torchrun started several (``distributed``), train, leave."""
        self.world, self.device = distributed.start(distributed.from_environment(), resolve_device(self.config.device))
        if not self.world.main:
            self.reporter = Quiet()
        try:
            with contextlib.ExitStack() as self.held:  # the run's lock, taken in _fit, released here
                result = self._fit()
            self.world.barrier()  # every rank done before the group is taken down
            return result
        except RuntimeError as exc:
            distributed.failed(self.world, exc, getattr(getattr(self, "stop", None), "received", None))
            raise
        finally:
            self.objective: Any = None  # DistributedDataParallel holds the process group: let go of it first
            distributed.stop(self.world)

    def _fit(self) -> TrainResult:
        config, ckpt, world = self.config, self.ckpt, self.world
        if config.viz_dir:
            monitor.check_viz_dir(Path(config.viz_dir), config.force or ckpt is not None)
        if config.tensorboard:
            monitor.check_folder(Path(config.tensorboard), "--tensorboard")
            monitor.summary_writer()
        if config.mlflow or config.mlflow_uri:
            tracking.require()
        # unknown names and bad options fail before the data loads
        section = model_section(config) if ckpt is None else dict(ckpt.meta["model"])
        data = self._load_data(section)
        self._build(section)  # writes nothing: a model too large for the memory is refused here
        if world.main:  # one writer per checkpoint, from before the run writes anything
            self.held.enter_context(RunLock(self.path))
            remove_stale(self.path, self.reporter.warn)
        self._place_data(data)
        self._start_metadata(section, data)
        monitors = monitor.start(self, data) if world.main else []  # rank 0 writes them
        self.reporter.start(config, self.path, self.device, data)
        completed = False
        try:
            self._epochs(monitors)
            completed = True
        finally:
            self.model.noise_rows = None
            for m in monitors:
                monitor.guarded(m.close, m, self.reporter, completed)
        self.model.eval()
        self.model.meta = self.meta
        return TrainResult(self.path, self.model, self.metrics, world.main)

    def _load_data(self, section: dict) -> LoadedDataset:
        """The dataset (rank 0 downloads what is missing, then each node's first rank; the others
        read it after), checked
        against the checkpoint when resuming; its notes and the run's warnings said once."""
        config, ckpt, world, reporter = self.config, self.ckpt, self.world, self.reporter
        provider = None if ckpt is None else ckpt.meta["data"].get("dataset", {}).get("provider")
        data = world.in_turn(
            lambda: load_dataset(config.dataset, config.dataset_options, config.data_dir, config.download, provider)
        )
        if ckpt is None:
            section["input_shape"] = list(data.input_shape)
            settle_data(section, config, data.kind, data.learn_layout())
        else:
            data.check_same(self.ckpt.meta, f"--resume {self.path}")
        self.layout = kinds.layout_of(section)
        if self.layout is not None and (config.viz_dir or config.tensorboard or config.mlflow or config.mlflow_uri):
            raise UsageError(
                "--viz-dir, --tensorboard and --mlflow draw pictures of images; for rows they are not yet "
                "available (the metrics log CKPT.metrics.jsonl has every epoch's numbers)"
            )
        self.labels = data.class_labels(family_of(section).spec.conditional, section)
        for note in data.splits.notes:
            reporter.warn(note)
        if ckpt is None and config.kl_warmup > config.epochs:
            reporter.warn(
                f"--kl-warmup {config.kl_warmup:g} is longer than the run ({config.epochs} epochs): "
                f"the KL weight ends at {config.kl_weight(config.epochs, 1):g}, not {config.beta:g}"
            )
        return data

    def _build(self, section: dict) -> None:
        """The model, the optimizer, the arithmetic and the training generator, fresh or as the
        checkpoint left them."""
        config, ckpt, device = self.config, self.ckpt, self.device
        torch.manual_seed(config.seed)
        weights = weights_need(section)
        check_fits(weights, config, device)  # before the model is built
        model = (create_model(section) if ckpt is None else model_of(ckpt)).to(device)
        batch, row = batch_need(model, config.batch_size)
        check_fits(weights + batch + row, config, device, batch)  # the model, a batch and one decoded row
        self.reserved = weights + batch
        self.groups = parameter_groups(model, self.world.distributed)
        optimizer = make_optimizer(config, model.parameters() if self.groups is None else self.groups, device)
        self.asked = {"device": config.device, "precision": config.precision}  # what --resume resolves again
        self.amp = MixedPrecision(config.precision, device)
        config.precision = self.amp.name  # auto resolved: what the run uses and records
        gen = torch.Generator(device=device)
        gen.manual_seed(seed64(config.seed + 1))  # the training draws; the initialisation used torch.manual_seed(seed)
        if ckpt is not None:
            self._restore(optimizer, gen)
        model.train()
        self.model, self.optimizer, self.gen = model, optimizer, gen
        self.ema = ema.Averaged(model, config.ema, ckpt)  # after the checkpoint's weights are in
        model.noise_rows = None
        model.sample_rows = sample_rows(config.max_memory, device, model, self.reserved)
        return_large_buffers()
        self.objective = distributed.wrap(model, self.world, device, self.reporter.warn)
        if config.compile:
            self.objective = Compiled(self.objective)

    def _place_data(self, data: LoadedDataset) -> None:
        """Both splits on the device, binarized once where the run says so."""
        config, device = self.config, self.device
        train_images, test_images = data.splits.train.images, data.splits.test.images
        if self.layout is not None:  # rows: model inputs once (scaled, one-hot), float32
            train_images, test_images = (kinds.to_model(self.layout, x) for x in (train_images, test_images))
        if config.binarize == "static":  # one fixed draw of the training set
            train_images = binarize(train_images, BINARIZE_SEEDS["train"])
        if config.binarize != "none":  # the test set: one fixed draw, as `vae evaluate` makes it
            test_images = binarize(test_images, BINARIZE_SEEDS["test"])
        warn = self.reporter.warn if self.world.main else None
        self.train, self.test, placed = place(
            (train_images, test_images), self.labels, device, self.reserved, config.max_memory, warn
        )
        self.batches = math.ceil(len(train_images) / config.batch_size)
        if device.type != "cpu":  # the importance samples: sized with the data where it was placed
            self.model.sample_rows = sample_rows(config.max_memory, device, self.model, self.reserved + placed)

    def _start_metadata(self, section: dict, data: LoadedDataset) -> None:
        """What every checkpoint of the run records: the model, the data, the settings, the
        metrics so far."""
        config, ckpt = self.config, self.ckpt
        settings = dataclasses.asdict(config)
        settings.update(
            device=str(self.device), out=str(self.path), distributed=self.world.describe(), asked=self.asked
        )
        settings.pop("force")
        if ckpt is None:
            self.meta: dict[str, Any] = {
                "model": section,
                "data": data.section(config.binarize),
                "training": settings,
                "metrics": [],
                "epoch": 0,
                "created": checkpoint.now(),
            }
        else:
            self.meta = {
                key: ckpt.meta[key]
                for key in ("model", "data", "metrics", "epoch", "created", "mlflow")
                if key in ckpt.meta
            }
            self.meta["training"] = {**settings, "resumes": resumes(ckpt.meta["training"], settings, ckpt.epoch)}
            self.meta["epoch"] = ckpt.epoch
            self.saved = self._describe_saved(ckpt.epoch, (ckpt.meta.get("progress") or {}).get("step"))
        self.metrics: list[dict] = list(self.meta["metrics"])

    def _epochs(self, monitors: list) -> None:
        """Every epoch left, each told to the monitors; a stop request saves and ends the run."""
        config, world, reporter = self.config, self.world, self.reporter
        first = len(self.metrics) + 1
        partial = None if self.ckpt is None else self.ckpt.meta.get("progress")
        try:
            with StopSignal() as self.stop:
                for epoch in range(first, config.epochs + 1):
                    if world.agree(bool(why := keep.stalled(self.metrics, config.early_stop)), self.device):
                        if world.main:
                            reporter.warn(f"stopped early before epoch {epoch}: {why}")
                        break
                    record = self._epoch(epoch, partial if epoch == first else None)
                    for m in list(monitors):
                        if not monitor.guarded(m.epoch_end, m, reporter, epoch, self.model, record):
                            monitors.remove(m)  # a picture or log that fails never stops training
                            monitor.guarded(m.close, m, reporter, False)
                    if world.any(self.stop.received is not None, self.device) and epoch < config.epochs:
                        raise self._stopped(f"after epoch {epoch}")
        except KeyboardInterrupt:  # a second Ctrl-C: no time to save
            raise Interrupted(
                f"interrupted in epoch {self.epoch}, before it could be saved; {self._kept()}"
                + (f"; resume with: {self._resume_line()}" if self.saved else "")
            ) from None

    def _restore(self, optimizer: torch.optim.Optimizer, gen: torch.Generator) -> None:
        """Optimizer and random states as the checkpoint left them (its weights are loaded)."""
        ckpt = self.ckpt
        checkpoint.load_optimizer_state(optimizer, ckpt)
        checkpoint.restore_rng(ckpt, self.device)
        self.amp.restore(ckpt.tensors)
        state = ckpt.tensors.get("rng.train")
        trained_on = str(ckpt.meta["training"].get("device", ""))
        if state is not None and torch.device(trained_on).type == self.device.type:
            gen.set_state(state)
        else:
            self.reporter.warn(
                f"resuming on {self.device}, not {trained_on or 'the device it was trained on'}: "
                f"the random draws from here on differ from those of an uninterrupted run"
            )

    # -- messages -----------------------------------------------------------------------------

    def _describe_saved(self, epochs: int, step: Optional[int] = None) -> str:
        if step:
            return f"epoch {epochs + 1} up to step {step} of {self.batches}"
        return f"{epochs} completed epoch{'s' if epochs != 1 else ''}" if epochs else ""

    def _kept(self) -> str:
        return f"{self.path} holds {self.saved}" if self.saved else "no checkpoint was written"

    def _resume_line(self) -> str:
        return f"vae train --resume {shlex.quote(str(self.path))} --epochs {self.config.epochs}"

    def _stopped(self, when: str) -> Interrupted:
        signal_name = self.stop.received or "SIGINT"
        why = "interrupted (Ctrl-C)" if signal_name == "SIGINT" else f"stopped by {signal_name}"
        kind = Interrupted if signal_name == "SIGINT" else Terminated
        return kind(f"{why} {when}; {self._kept()}; resume with: {self._resume_line()}")

    # -- one epoch ----------------------------------------------------------------------------

    def _epoch(self, epoch: int, partial: Optional[dict]) -> dict:
        """The batches (from step ``partial["step"]`` of a checkpoint written inside this
        epoch), the test pass, the metrics and the checkpoint."""
        config, model, optimizer, gen = self.config, self.model, self.optimizer, self.gen
        self.epoch = epoch
        placed, train_labels = self.train
        device, batches, n = self.device, self.batches, len(placed)
        acc = accumulator_dtype(device)
        world = self.world
        if partial:
            order = self.ckpt.tensors["progress.order"].to(device)
            sums = self.ckpt.tensors["progress.sums"].to(device=device, dtype=acc)
            if not world.main:
                sums.zero_()  # the sums of all ranks so far; rank 0 carries them
            done, elapsed = int(partial["step"]), float(partial["seconds"])
        else:
            order = world.same_order(torch.randperm(n, device=device, generator=gen))  # this epoch's batches
            sums = torch.zeros(
                len(model.TERMS) + 1, device=device, dtype=acc
            )  # the terms and the objective, summed over examples
            done, elapsed = 0, 0.0
        objectives = torch.zeros(batches, device=device)  # each step's: names the first non-finite one
        self.reporter.epoch_start(epoch, config.epochs, batches)
        started = time.perf_counter() - elapsed
        step = (epoch - 1) * batches + done
        amp, objective_of = self.amp, self.objective
        for i, (idx, rows) in enumerate(placed.batches(order, config.batch_size, done), start=done + 1):
            local, offset = world.shard(idx)  # this rank's part of the batch (all of it in one process)
            x = to_unit(rows)  # (B, C, H, W) in [0, 1]
            if config.binarize == "dynamic":  # a new draw every batch
                x = torch.bernoulli(x, generator=gen)
            if world.distributed:  # the whole batch was drawn, as one process draws it
                x = x[offset : offset + len(local)]
                model.noise_rows = (offset, len(idx))
            lr = config.learning_rate(step, batches)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            beta = config.kl_weight(step + 1, batches)
            with amp.autocast():
                terms = objective_of(
                    x,
                    beta,
                    gen,
                    labels=None if train_labels is None else train_labels.index_select(0, local),
                    free_bits=config.free_bits,
                    iw_samples=config.iw_samples,
                )
            optimizer.zero_grad(set_to_none=True)
            # the gradient of the batch's mean: ranks' shards may differ by one example
            backward(amp, terms, self.groups, world.size * len(local) / len(idx) if world.distributed else 1.0)
            if config.grad_clip:
                amp.unscale(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            amp.step(optimizer)
            self.ema.update()
            step += 1
            objective = terms.objective.detach()
            objectives[i - 1] = objective
            sums += torch.stack([*(terms.terms[t].detach().sum() for t in model.TERMS), objective * len(local)])
            self.reporter.step(i, objective)
            if i % CHECK_STEPS == 0:
                self._check_finite(epoch, i, objectives, sums)
            stop = self.stop.received is not None
            if world.distributed:  # all ranks stop at the same step: they agree every CHECK_STEPS
                stop = i % CHECK_STEPS == 0 and world.any(stop, device)
            if stop or (config.save_every and step % config.save_every == 0 and i < batches):
                self._save(epoch, (i, order, sums, time.perf_counter() - started), objectives)
                if stop:
                    raise self._stopped(f"in epoch {epoch} at step {i} of {batches}")
        self._check_finite(epoch, batches, objectives, sums)
        train_seconds = time.perf_counter() - started
        *means, objective = (world.sum_(sums.clone()) / n).tolist()
        train = dict(zip(model.TERMS, means))
        with self.ema.applied():
            test = test_pass(model, *self.test)
        record = {
            "epoch": epoch,
            **{f"train_{k}": v for k, v in model.summary(train).items()},  # train_nelbo: whatever the objective
            "train_objective": objective,  # what was minimised (beta, free bits, IWAE)
            "kl_weight": beta,  # the weight of the KL term at the end of the epoch (below --beta during warm-up)
            "lr": lr,  # the learning rate of the last step
            **{f"train_{k}": v for k, v in train.items()},
            **{f"test_{k}": v for k, v in test.items()},
            "seconds": train_seconds,
        }
        if world.agree(not all(math.isfinite(v) for v in test.values()), device):
            raise TrainingError(
                f"the test loss became non-finite after epoch {epoch}; {self._kept()}; "
                f"try a smaller --lr or --grad-clip"
            )
        self.meta["metrics"] = self.metrics + [record]
        self.meta["epoch"] = epoch
        self._save(epoch, None, objectives)
        self.metrics.append(record)  # only once it is on disk
        self.reporter.epoch_end(record)
        return record

    def _check_finite(self, epoch: int, steps: int, objectives: torch.Tensor, sums: torch.Tensor) -> None:
        """Stop with the first non-finite step named; a host synchronisation, so only every
        ``CHECK_STEPS`` steps and before each checkpoint."""
        if bool(torch.isfinite(self.world.sum_(sums.clone())).all()):  # the same answer on every rank
            return
        bad = (~torch.isfinite(objectives[:steps])).nonzero()
        where = f"at step {int(bad[0]) + 1} of {self.batches}" if len(bad) else f"by step {steps} of {self.batches}"
        raise TrainingError(
            f"the training loss or its gradients became non-finite in epoch {epoch} {where}; "
            f"{self._kept()}; try a smaller --lr or --grad-clip"
        )

    def _save(self, epoch: int, partial: Optional[tuple], objectives: torch.Tensor) -> None:
        """Write the checkpoint: after an epoch (``partial`` None, ``self.meta`` already holds its
        metrics) or inside one (``partial``: steps done, the epoch's order, running sums,
        seconds). Never over a good checkpoint with non-finite weights."""
        meta, extra = self.meta, {"rng.train": self.gen.get_state(), **self.amp.state()}
        if partial is not None:
            i, order, sums, seconds = partial
            self._check_finite(epoch, i, objectives, sums)
            meta = {**meta, "progress": {"epoch": epoch, "step": i, "seconds": seconds}}
            extra.update({"progress.order": order, "progress.sums": self.world.sum_(sums.clone()).double()})
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise TrainingError(
                f"the weights became non-finite in epoch {epoch}; nothing of it was saved; "
                f"{self._kept()}; try a smaller --lr or --grad-clip"
            )
        extra.update(self.ema.state())  # the live weights, before the averaged ones are put in
        if self.world.main:  # one writer
            with self.ema.applied():
                checkpoint.save(self.path, self.model, meta, optimizer=self.optimizer, rng=True, extra=extra)
        self.saved = self._describe_saved(meta["epoch"], None if partial is None else partial[0])
