"""Training never loses work: exact resume (bit-identical on the CPU), checkpoints inside an
epoch (--save-every), Ctrl-C and SIGTERM save and say how to go on, stale temporary files are
removed, and a real `vae train` process killed with SIGKILL at several moments (inside an epoch,
inside a checkpoint write) leaves a checkpoint that loads and that --resume finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import vaecli
from conftest import TINY_CLI, ends_in_error, one_line_error
from vaecli import checkpoint, training
from vaecli.data import to_unit
from vaecli.training import trainer

pytestmark = pytest.mark.usefixtures("one_thread")

STATE = ("model.", "optim.", "rng.", "amp.")


def _ok(result):
    assert result.exit_code == 0, result.output
    return result


def assert_same_run(a: Path, b: Path) -> None:
    """Weights, optimizer and RNG states equal bit for bit, and the same metrics (but seconds)."""
    ca, cb = checkpoint.read(a), checkpoint.read(b)
    keys = sorted(k for k in ca.tensors if k.startswith(STATE))
    assert keys == sorted(k for k in cb.tensors if k.startswith(STATE))
    assert any(k.startswith("optim.") for k in keys) and "rng.train" in keys
    different = [k for k in keys if not torch.equal(ca.tensors[k], cb.tensors[k])]
    assert different == []
    strip = lambda ms: [{k: v for k, v in m.items() if k != "seconds"} for m in ms]  # noqa: E731
    assert strip(ca.meta["metrics"]) == strip(cb.meta["metrics"])
    assert ca.epoch == cb.epoch and "progress" not in cb.meta


# --------------------------------------------------------------------------------------------
# k epochs + resume == N epochs straight
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        [],
        [
            "--binarize",
            "dynamic",
            "--model",
            "cvae",
            "--optimizer",
            "adamw",
            "--lr-schedule",
            "step",
            "--lr-step",
            "1",
            "--lr-gamma",
            "0.5",
            "--grad-clip",
            "1",
        ],
        ["--iw-samples", "3", "--likelihood", "gaussian", "--likelihood-option", "learn_sigma=shared"],
        ["--kl-warmup", "2", "--free-bits", "0.1", "--arch", "conv", "--arch-option", "channels=4"],
        ["--precision", "fp16", "--grad-clip", "5"],
        ["--precision", "bf16", "--arch", "conv", "--arch-option", "channels=4"],
        ["--ema", "0.9", "--save-every", "2"],
    ],
    ids=[
        "default",
        "cvae-dynamic-adamw-step-clip",
        "iwae-gaussian",
        "warmup-freebits-conv",
        "fp16-clip",
        "bf16-conv",
        "ema",
    ],
)
def test_k_epochs_then_resume_is_bit_identical_to_straight(vae, extra):
    _ok(vae("train", *TINY_CLI, *extra, "--epochs", "3", "-o", "straight.safetensors"))
    _ok(vae("train", *TINY_CLI, *extra, "--epochs", "1", "-o", "r.safetensors"))
    result = _ok(vae("train", "--resume", "r.safetensors", "--epochs", "3"))
    assert "Saved r.safetensors after 3 epochs" in result.stdout
    assert_same_run(Path("straight.safetensors"), Path("r.safetensors"))
    meta = vaecli.metadata("r.safetensors")
    assert meta["training"]["epochs"] == 3
    if "--ema" in extra:  # the live weights and the count of updates go on too
        a, b = checkpoint.read("straight.safetensors").tensors, checkpoint.read("r.safetensors").tensors
        assert int(b["ema.updates"]) == 9 and all(torch.equal(a[k], b[k]) for k in a if k.startswith("ema."))
    if "fp16" in extra:  # the loss scale goes on where it was
        assert {"amp.scale", "amp.growth_tracker"} <= set(checkpoint.read("r.safetensors").tensors)
    lines = [json.loads(line) for line in Path("r.metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2, 3]


def test_resume_without_epochs_finishes_the_planned_run(vae):
    _ok(vae("train", *TINY_CLI, "--epochs", "2", "-o", "straight.safetensors"))
    _ok(vae("train", *TINY_CLI, "--epochs", "2", "-o", "r.safetensors"))
    one_line_error(vae("train", "--resume", "r.safetensors"), 2, "already trained 2 epochs", "more than 2")
    # stopped in epoch 2 (as a kill would), then resumed without --epochs
    ckpt = checkpoint.read("r.safetensors")
    assert ckpt.meta["training"]["epochs"] == 2


# --------------------------------------------------------------------------------------------
# Inside an epoch: --save-every, Ctrl-C, SIGTERM
# --------------------------------------------------------------------------------------------


def _signal_at_batch(monkeypatch, number: int, signum: int) -> None:
    """Send ``signum`` to this process while the ``number``-th training batch is prepared."""
    real = trainer.to_unit
    seen = []

    def to_unit(images):
        seen.append(1)
        if len(seen) == number:
            os.kill(os.getpid(), signum)
        return real(images)

    monkeypatch.setattr(trainer, "to_unit", to_unit)


def test_save_every_writes_checkpoints_inside_epochs(vae, monkeypatch):
    saved = []
    real = checkpoint.save

    def save(path, model, meta, **kwargs):
        saved.append((meta["epoch"], meta.get("progress", {}).get("step")))
        real(path, model, meta, **kwargs)

    monkeypatch.setattr(checkpoint, "save", save)
    _ok(vae("train", *TINY_CLI, "--epochs", "2", "--save-every", "2", "-o", "s.safetensors"))
    # 3 steps per epoch: global steps 2 and 4 fall inside epochs 1 and 2; step 6 ends epoch 2
    assert saved == [(0, 2), (1, None), (1, 1), (2, None)]
    assert "checkpoint every 2 steps" in " ".join(_ok(vae("info", "s.safetensors")).stdout.split())


def test_ctrl_c_inside_an_epoch_saves_and_resume_is_exact(vae, monkeypatch):
    _ok(vae("train", *TINY_CLI, "--binarize", "dynamic", "--epochs", "3", "-o", "straight.safetensors"))
    _signal_at_batch(monkeypatch, 5, signal.SIGINT)  # epoch 2, step 2 of 3
    line = ends_in_error(
        vae("train", *TINY_CLI, "--binarize", "dynamic", "--epochs", "3", "-o", "m.safetensors"),
        130,
        "interrupted (Ctrl-C) in epoch 2 at step 2 of 3",
    )
    assert line.endswith(
        "m.safetensors holds epoch 2 up to step 2 of 3; resume with: vae train --resume m.safetensors --epochs 3"
    )
    monkeypatch.setattr(trainer, "to_unit", to_unit)  # no more signals
    meta = json.loads(_ok(vae("info", "m.safetensors", "--json")).stdout)
    assert meta["epoch"] == 1 and meta["progress"]["epoch"] == 2 and meta["progress"]["step"] == 2
    assert "epochs 1/3 and 2 steps of epoch 2" in " ".join(_ok(vae("info", "m.safetensors")).stdout.split())
    vaecli.load("m.safetensors")  # a checkpoint inside an epoch works with every command
    _ok(vae("train", "--resume", "m.safetensors"))
    assert_same_run(Path("straight.safetensors"), Path("m.safetensors"))


def test_sigterm_saves_and_exits_143(vae, monkeypatch):
    _signal_at_batch(monkeypatch, 2, signal.SIGTERM)
    ends_in_error(
        vae("train", *TINY_CLI, "--epochs", "2", "-o", "t.safetensors"),
        143,
        "stopped by SIGTERM in epoch 1 at step 2 of 3",
        "--resume t.safetensors",
    )
    assert checkpoint.read("t.safetensors").meta["progress"]["step"] == 2


def test_a_signal_during_the_last_epochs_test_pass_just_finishes(vae, monkeypatch):
    real = trainer.test_pass

    def evaluate(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "test_pass", evaluate)
    ends_in_error(
        vae("train", *TINY_CLI, "--epochs", "2", "-o", "a.safetensors"),
        130,
        "interrupted (Ctrl-C) after epoch 1",
        "a.safetensors holds 1 completed epoch",
    )
    _ok(vae("train", *TINY_CLI, "--epochs", "1", "-o", "b.safetensors"))  # the last epoch: nothing to stop


# --------------------------------------------------------------------------------------------
# What --resume refuses, and stale temporary files
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--lr", "0.1"], ["--lr cannot change them"]),
        (["shapes", "--latent-dim", "4"], ["--latent-dim, DATASET cannot change them"]),
        (["--epochs", "1"], ["already trained 2 epochs"]),
        (["--model", "ae", "-o", "other.safetensors"], ["--model, --out cannot change them"]),
    ],
)
def test_resume_refuses_what_it_cannot_do(vae, args, needles):
    _ok(vae("train", *TINY_CLI, "--epochs", "2", "-o", "r.safetensors"))
    before = Path("r.safetensors").read_bytes()
    one_line_error(vae("train", "--resume", "r.safetensors", *args), 2, *needles)
    assert Path("r.safetensors").read_bytes() == before


def test_resume_of_what_cannot_be_resumed(vae, tiny_ckpt):
    one_line_error(vae("train", "--resume", "nope.safetensors"), 2, "nope.safetensors: no such file")
    ckpt = checkpoint.read(tiny_ckpt)
    model = vaecli.load(tiny_ckpt)
    meta = {k: v for k, v in ckpt.meta.items() if k != "optim"}
    checkpoint.save(Path("bare.safetensors"), model, meta)  # weights only
    one_line_error(vae("train", "--resume", "bare.safetensors", "--epochs", "5"), 2, "holds no optimizer state")


def test_stale_temporary_files_of_a_killed_run_are_removed(vae):
    _ok(vae("train", *TINY_CLI, "--epochs", "1", "-o", "r.safetensors"))
    stale = [Path(".r.safetensors.x1y2z3.tmp"), Path(".r.safetensors.abcdef.tmp")]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    other = Path(".other.safetensors.abcdef.tmp")
    other.write_bytes(b"not ours")
    result = _ok(vae("train", "--resume", "r.safetensors", "--epochs", "2"))
    assert "removed 2 temporary files that a killed run left beside r.safetensors" in result.stderr
    assert not any(p.exists() for p in stale) and other.exists()


# --------------------------------------------------------------------------------------------
# A real process, killed with SIGKILL
# --------------------------------------------------------------------------------------------

# 4000 images of 8x8 in batches of 32: 125 steps per epoch, a checkpoint every 25 steps.
KILL_RUN = [
    "train",
    "shapes",
    "--data-option",
    "n_train=4000",
    "--data-option",
    "n_test=200",
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
    "--epochs",
    "3",
    "--save-every",
    "25",
    "--binarize",
    "dynamic",
    "-o",
    "k.safetensors",
]

# `vae` itself, each batch slowed by 4 ms so that the test can act inside an epoch (the numbers
# do not change).
SLOW = textwrap.dedent("""
    import sys, time
    from vaecli.training import trainer

    real_to_unit = trainer.to_unit

    def to_unit(images):
        time.sleep(0.004)
        return real_to_unit(images)

    trainer.to_unit = to_unit
""")
RUN = "from vaecli.cli import main\nsys.argv = ['vae', *sys.argv[1:]]\nmain()\n"

# ... and the Nth fsync of a checkpoint's temporary file (written in full, not yet renamed over
# the checkpoint) announces itself in a marker file and waits to be killed.
STALL_IN_WRITE = SLOW + textwrap.dedent("""
    import os
    from vaecli import checkpoint

    real_fsync, writes, stall_at = os.fsync, [], int(os.environ["STALL_AT_WRITE"])

    def fsync(fd):
        name = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        if name.endswith(".tmp"):
            writes.append(name)
            if len(writes) == stall_at:
                open("stalled", "w").write(name)
                time.sleep(120)
        return real_fsync(fd)

    checkpoint.os.fsync = fsync
""")


def _start(tmp_path: Path, script: str = "", env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", (script or SLOW) + RUN, *KILL_RUN],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(
                f"vae train ended (exit {proc.returncode}) before {what}: {proc.stderr.read().decode()[-2000:]}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The same run, uninterrupted, in this process."""
    folder = tmp_path_factory.mktemp("straight")
    result = subprocess.run(
        [sys.executable, "-m", "vaecli", *KILL_RUN],
        cwd=folder,
        capture_output=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    return folder / "k.safetensors"


def _saved(path: Path):
    """(completed epochs, steps into the next) of the checkpoint on disk, or None."""
    try:
        ckpt = checkpoint.read(path)
    except Exception:
        return None
    return ckpt.epoch, (ckpt.meta.get("progress") or {}).get("step", 0)


class _Warnings(training.Silent):
    def __init__(self) -> None:
        self.said: list[str] = []

    def warn(self, message: str) -> None:
        self.said.append(message)


def test_sigkill_during_an_epoch_then_resume_finishes_the_same_run(tmp_path, straight):
    ckpt = tmp_path / "k.safetensors"
    proc = _start(tmp_path)
    _wait_for(lambda: (_saved(ckpt) or (0, 0)) >= (1, 25), proc, "a checkpoint inside epoch 2")
    _kill(proc)
    epoch, step = _saved(ckpt)  # the last checkpoint reads, and its model loads
    assert (epoch, step) >= (1, 25)
    assert vaecli.load(ckpt).latent_dim == 3
    training.resume(ckpt)  # as `vae train --resume k.safetensors`, in this process (one thread too)
    assert_same_run(straight, ckpt)


def test_sigkill_during_a_checkpoint_write_keeps_the_previous_one(tmp_path, straight):
    ckpt = tmp_path / "k.safetensors"
    proc = _start(tmp_path, STALL_IN_WRITE, {"STALL_AT_WRITE": "3"})  # the third checkpoint write
    _wait_for((tmp_path / "stalled").exists, proc, "the third checkpoint write")
    before = ckpt.read_bytes()
    temp = Path((tmp_path / "stalled").read_text())
    assert temp.exists() and temp.parent == tmp_path
    _kill(proc)
    assert ckpt.read_bytes() == before  # the checkpoint is the second one, whole
    assert _saved(ckpt) == (0, 50)
    reporter = _Warnings()
    training.resume(ckpt, reporter=reporter)
    assert reporter.said == [f"removed 1 temporary file that a killed run left beside {ckpt}: {temp.name}"]
    assert not temp.exists()
    assert_same_run(straight, ckpt)


# One process that has imported vae forks a child per run; the child SIGKILLs itself at the
# moment its schedule names: before its Nth batch, before the Nth fsync of a file it writes,
# just before or just after its Nth rename (a checkpoint or the metrics log put in place). After
# each kill the parent copies the checkpoint and the metrics log aside (kill-I/) for the test
# to check, then starts the next child: a resume when a checkpoint exists, else a fresh run.
KILLER = textwrap.dedent("""
    import importlib, json, os, shutil, signal, sys
    from vaecli import checkpoint
    from vaecli.cli import run
    from vaecli.training import trainer

    for name in ("torch._dynamo", "torch.optim", "safetensors.torch", "numpy", "rich.progress", "vaecli.api",
                 "vaecli.builtin.shapes", "vaecli.builtin.datasets", "vaecli.training.run"):
        importlib.import_module(name)  # once here, not in every child

    schedule = json.loads(sys.argv[1])
    seen, target, trail = {}, [None, 0], []

    def at(event, path=""):
        seen[event] = seen.get(event, 0) + 1
        trail.append(event + (":" + os.path.basename(path) if path else ""))
        if target[0] == event and seen[event] == target[1]:
            with open("last-events", "w") as f:  # what the child did last, the kill's moment last
                json.dump(trail[-3:], f)
            os.kill(os.getpid(), signal.SIGKILL)

    def wrap(module, name, before, after=None):
        real = getattr(module, name)
        def patched(*args, **kwargs):
            at(before)
            result = real(*args, **kwargs)
            if after:
                at(after, args[1])
            return result
        setattr(module, name, patched)

    wrap(trainer, "to_unit", "batch")
    wrap(checkpoint.os, "fsync", "fsync")
    wrap(checkpoint.os, "replace", "rename", "renamed")
    fresh = sys.argv[2:]
    kills = 0
    for i, (event, n) in enumerate([*schedule, [None, 0]]):
        exists = os.path.exists("k.safetensors")
        pid = os.fork()
        if pid == 0:
            seen.clear()
            trail.clear()
            target[:] = [event, n]
            sys.argv = ["vae", *(["train", "--resume", "k.safetensors", "--epochs", "3"] if exists else fresh)]
            try:
                run()
            except SystemExit as exc:
                os._exit(exc.code if isinstance(exc.code, int) else 1)
            os._exit(0)
        status = os.waitpid(pid, 0)[1]
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        if event is not None and not killed:
            print(f"run {i} ended (status {status}) before {event} {n}", file=sys.stderr)
            sys.exit(3)
        kills += killed
        snap = f"kill-{i}"
        os.mkdir(snap)
        for name in ("k.safetensors", "k.metrics.jsonl", "last-events"):
            if os.path.exists(name):
                shutil.copy(name, os.path.join(snap, name))
        json.dump({"event": event, "n": n, "killed": killed}, open(os.path.join(snap, "kill.json"), "w"))
    print(kills)
""")


def _kill_schedule(seed: int, kills: int) -> list:
    """Seeded kill moments that leave the run unfinished after every one of them: each kill
    falls within the next checkpoint or two (a checkpoint every 25 steps of 375)."""
    import random

    rng = random.Random(seed)
    events = [("batch", lambda: rng.randint(1, 30)), ("fsync", lambda: rng.randint(1, 2))]
    events += [("rename", lambda: rng.randint(1, 2)), ("renamed", lambda: rng.randint(1, 2))]
    return [(event, draw()) for event, draw in (rng.choice(events) for _ in range(kills))]


def _check_after_kill(folder: Path) -> None:
    """The checkpoint (if any) loads; the metrics log holds whole lines, epochs 1, 2, ... once
    each, equal to the checkpoint's records: all of them, or all but the last when the kill fell
    just after a checkpoint was renamed into place (its rename, or the folder's fsync that makes
    it durable), before its epoch's line was appended."""
    kill = json.loads((folder / "kill.json").read_text())
    ckpt, log = folder / "k.safetensors", folder / "k.metrics.jsonl"
    if not ckpt.exists():
        assert not log.exists(), kill
        return
    saved = checkpoint.read(ckpt)
    assert vaecli.load(ckpt).latent_dim == 3
    lines = log.read_text().splitlines() if log.exists() else []
    records = [json.loads(line) for line in lines]  # every line whole
    assert [r["epoch"] for r in records] == list(range(1, len(records) + 1)), kill
    behind = saved.epoch - len(records)
    trail = json.loads((folder / "last-events").read_text())
    just_renamed = trail[-1] == "renamed:k.safetensors" or trail[-2:] == ["renamed:k.safetensors", "fsync"]
    assert behind == 0 or (behind == 1 and just_renamed), (kill, trail, saved.epoch, len(records))
    assert records == saved.meta["metrics"][: len(records)]


def test_twenty_sigkills_at_seeded_moments_then_resume_ends_bit_identical(tmp_path, straight):
    schedule = _kill_schedule(seed=23, kills=20)
    result = subprocess.run(
        [sys.executable, "-c", KILLER, json.dumps(schedule), *KILL_RUN],
        cwd=tmp_path,
        capture_output=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert int(result.stdout.decode().split()[-1]) == 20
    assert {event for event, _ in schedule} == {"batch", "fsync", "rename", "renamed"}
    for i in range(20):
        _check_after_kill(tmp_path / f"kill-{i}")
    assert_same_run(straight, tmp_path / "k.safetensors")  # the last run resumed to the end
    records = [json.loads(line) for line in (tmp_path / "k.metrics.jsonl").read_text().splitlines()]
    assert records == checkpoint.read(tmp_path / "k.safetensors").meta["metrics"]


def test_ctrl_c_of_a_real_process_exits_130_and_says_how_to_resume(tmp_path):
    proc = _start(tmp_path)
    _wait_for((tmp_path / "k.safetensors").exists, proc, "the first checkpoint")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    stderr = " ".join(proc.stderr.read().decode().split())
    assert "error: interrupted (Ctrl-C) in epoch 1 at step" in stderr
    assert "resume with: vae train --resume k.safetensors --epochs 3" in stderr
    assert "Traceback" not in stderr
    assert _saved(tmp_path / "k.safetensors")[1] > 25
