"""Schedules of a training run as pure functions of the step: the learning rate and the KL
weight. A resumed run continues them exactly. No torch here."""

from __future__ import annotations

import math

from .errors import UsageError

LR_SCHEDULES = ("constant", "cosine", "step", "multistep", "burda")


def burda_stage(epoch: int) -> int:
    """The stage i of Burda et al.'s schedule that epoch ``epoch`` (0-based) is in: stage i holds
    the 3^i epochs from (3^i - 1) / 2 on."""
    i = 0
    while (3 ** (i + 1) - 1) // 2 <= epoch:
        i += 1
    return i


def kl_weight(beta: float, warmup: float, step: int, batches: int) -> float:
    """beta after ``step`` optimisation steps: linear from 0 to beta over ``warmup`` epochs
    (Bowman et al. 2016; Sonderby et al. 2016), then beta."""
    if not warmup:
        return beta
    return beta * min(1.0, step / (warmup * batches))


def learning_rate(
    schedule: str, lr: float, step: int, batches: int, *, epochs: int, gamma: float, every: int, milestones: list
) -> float:
    """The learning rate of step ``step`` (0-based): constant; cosine from lr to 0 over the
    whole run of ``epochs`` (Loshchilov & Hutter 2017, without restarts); times ``gamma`` every
    ``every`` epochs (step); times ``gamma`` at each of ``milestones``, counted in completed
    epochs (multistep, as torch's MultiStepLR); or burda.

    burda (Burda et al. 2015, section 5): 3^i epochs at lr * 10^(-i/7) for i = 0, 1, ..., 7,
    3280 epochs in all (epoch 0; 1-3; 4-12; 13-39; 40-120; 121-363; 364-1092; 1093-3279,
    counted from 0); a longer run goes on in the same way (i = 8 from epoch 3280)."""
    if schedule == "cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * step / (epochs * batches)))
    if schedule == "step":
        return lr * gamma ** (step // batches // every)
    if schedule == "multistep":
        epoch = step // batches
        return lr * gamma ** sum(1 for m in milestones if epoch >= m)
    if schedule == "burda":
        return lr * 10 ** (-burda_stage(step // batches) / 7)
    return lr


def check(schedule: str, every: int, gamma: float, milestones: object) -> None:
    """The settings of a learning-rate schedule, together."""
    if schedule == "step" and every < 1:
        raise UsageError("--lr-schedule step needs --lr-step EPOCHS (how often the rate is multiplied by --lr-gamma)")
    if schedule != "step" and every:
        raise UsageError(f"--lr-step is for --lr-schedule step (not {schedule})")
    if not isinstance(milestones, (list, tuple)) or not all(
        isinstance(m, int) and not isinstance(m, bool) for m in milestones
    ):
        raise UsageError(f"--lr-milestones must be a list of epochs, got {milestones!r}")
    if schedule == "multistep" and not milestones:
        raise UsageError(
            "--lr-schedule multistep needs --lr-milestones EPOCHS (e.g. 200,350: the epochs "
            "after which the rate is multiplied by --lr-gamma)"
        )
    if schedule != "multistep" and milestones:
        raise UsageError(f"--lr-milestones is for --lr-schedule multistep (not {schedule})")
    if any(m < 1 for m in milestones) or any(b <= a for a, b in zip(milestones, milestones[1:])):
        raise UsageError(
            f"--lr-milestones must be increasing epochs of at least 1, got {','.join(map(str, milestones))}"
        )
    if not 0 < gamma <= 1:
        raise UsageError(f"--lr-gamma must be in (0, 1], got {gamma}")
