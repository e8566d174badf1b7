"""Training on several processes (torch.distributed through torchrun): two gloo processes on the
CPU compute what one process computes, one of them writes the checkpoint, and resuming works
under torchrun too. The process-free parts (sharding, noise, launching) are checked directly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vaecli
from conftest import TINY_ARCH, TINY_CLI, one_line_error, tiny_run
from vaecli import factory
from vaecli.errors import VaeError
from vaecli.training import distributed
from vaecli.training.distributed import World

ARGS = ["shapes", *TINY_CLI, "--precision", "fp32"]


def _env() -> dict:
    env = dict(os.environ, VAECLI_LOAD_PLUGINS="", OMP_NUM_THREADS="1")
    if Path("/sys/class/net/lo").exists():  # gloo on the loopback, whatever the host name resolves to
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    return env


def _single(epochs: int, out: str):
    return vaecli.train(**tiny_run(precision="fp32", epochs=epochs, out=out))


def _same_training(a: Path, b: Path) -> None:
    """Metrics equal to a few parts in a million, weights to float precision: only the order of
    floating-point sums differs between one process and two."""
    ma, mb = vaecli.metadata(a)["metrics"], vaecli.metadata(b)["metrics"]
    assert [m["epoch"] for m in ma] == [m["epoch"] for m in mb]
    for x, y in zip(ma, mb):
        for key in ("train_nelbo", "train_recon", "train_kl", "test_nelbo", "test_recon", "test_kl"):
            assert x[key] == pytest.approx(y[key], rel=1e-5, abs=1e-6), key
    wa, wb = factory.load(a).state_dict(), factory.load(b).state_dict()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=1e-4, atol=1e-5)


def test_two_gloo_processes_write_one_checkpoint_that_matches_one_process(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "vaecli",
        "train",
        *ARGS,
        "--epochs",
        "2",
        "-o",
        "d.safetensors",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("Saved d.safetensors after 2 epochs") == 1  # rank 0 speaks
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.metrics.jsonl", "d.safetensors"]  # no temp files left
    assert len((tmp_path / "d.metrics.jsonl").read_text().splitlines()) == 2  # one writer, once per epoch
    meta = vaecli.metadata(tmp_path / "d.safetensors")
    assert meta["training"]["distributed"] == {"world_size": 2, "backend": "gloo"}
    model = factory.load(tmp_path / "d.safetensors")  # loads in this single process like any other
    assert model.sample(4).shape == (4, 1, 8, 8)
    _single(2, str(tmp_path / "s.safetensors"))
    _same_training(tmp_path / "d.safetensors", tmp_path / "s.safetensors")
    assert vaecli.metadata(tmp_path / "s.safetensors")["training"]["distributed"] == {
        "world_size": 1,
        "backend": "none",
    }


def test_resume_under_torchrun_with_nproc(tmp_path):
    first = subprocess.run(
        ["vae", "train", *ARGS, "--epochs", "1", "--nproc", "2", "-o", "r.safetensors"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    again = subprocess.run(
        ["vae", "train", "--resume", "r.safetensors", "--epochs", "2", "--nproc", "2"],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("Saved r.safetensors after 2 epochs") == 1
    assert "Traceback" not in again.stderr and "OMP_NUM_THREADS" not in again.stderr
    _single(2, str(tmp_path / "s.safetensors"))
    _same_training(tmp_path / "r.safetensors", tmp_path / "s.safetensors")


# -- without processes ------------------------------------------------------------------------


@pytest.mark.parametrize("n, size", [(32, 2), (31, 2), (7, 3), (1, 2)])
def test_each_rank_takes_a_contiguous_disjoint_shard(n, size):
    idx = torch.randperm(100)[:n]
    parts = [World(rank=r, size=size).shard(idx) for r in range(size)]
    assert torch.equal(torch.cat([p for p, _ in parts]), idx)
    assert [start for _, start in parts] == [sum(len(p) for p, _ in parts[:r]) for r in range(size)]
    assert max(len(p) for p, _ in parts) - min(len(p) for p, _ in parts) <= 1
    assert World().shard(idx) == (idx, 0)


def test_a_shards_noise_is_its_rows_of_the_whole_batchs_noise():
    from conftest import TINY_ARCH as arch  # noqa: F401
    from vaecli.factory import create_model as from_config
    from vaecli.factory import model_section as model_config
    from vaecli.training import TrainConfig

    meta = model_config(TrainConfig(arch_options=dict(TINY_ARCH), latent_dim=3))
    meta["input_shape"] = [1, 8, 8]
    model = from_config(meta)
    like = torch.zeros(5, 3)
    whole = model.noise(torch.zeros(12, 3), torch.Generator().manual_seed(7))
    model.noise_rows = (4, 12)
    part = model.noise(like, torch.Generator().manual_seed(7))
    assert torch.equal(part, whole[4:9])
    iw = model.noise(torch.zeros(5, 2, 3), torch.Generator().manual_seed(7))  # IWAE: (B, k, D)
    model.noise_rows = None
    assert torch.equal(iw, model.noise(torch.zeros(12, 2, 3), torch.Generator().manual_seed(7))[4:9])


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, World()),
        ({"WORLD_SIZE": "1", "RANK": "0"}, World()),
        ({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}, World(rank=3, size=4, local_rank=1)),
    ],
)
def test_the_world_comes_from_torchruns_environment(monkeypatch, env, expected):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert distributed.from_environment() == expected


@pytest.mark.parametrize(
    "env, needle", [({"WORLD_SIZE": "two"}, "whole numbers"), ({"WORLD_SIZE": "2", "RANK": "5"}, "outside")]
)
def test_a_bad_environment_is_an_error(monkeypatch, env, needle):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(vaecli.VaeError, match=needle):
        distributed.from_environment()


def test_nproc_passes_the_command_line_on_to_torchrun(vae, monkeypatch):
    seen = []
    monkeypatch.setattr(distributed, "launch", lambda n, args, checkpoint: seen.append((n, args, checkpoint)) or 0)
    result = vae(
        "train",
        "shapes",
        "--epochs",
        "1",
        "--arch-option",
        "hidden=32",
        "--arch-option",
        "activation=tanh",
        "--no-download",
        "--nproc",
        "2",
        "-o",
        "x.safetensors",
    )
    assert result.exit_code == 0, result.output
    assert seen == [
        (
            2,
            [
                "shapes",
                "--arch-option",
                "hidden=32",
                "--arch-option",
                "activation=tanh",
                "--epochs",
                "1",
                "--no-download",
                "--out",
                "x.safetensors",
            ],
            "x.safetensors",
        )
    ]
    assert not Path("x.safetensors").exists()


def test_nproc_refusals_are_one_line(vae, monkeypatch):
    one_line_error(vae("train", *TINY_CLI, "--nproc", "0"), 2, "--nproc must be at least 1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    one_line_error(vae("train", *TINY_CLI, "--nproc", "2"), 2, "already runs under it")


# Rank 1 fails before its FAULT_STEP-th batch: it raises a vae error, or SIGKILLs itself. Put on
# PYTHONPATH as sitecustomize, it wraps vaecli.images.to_unit as soon as that module is imported
# (before the trainer takes it), in the processes torchrun starts with RANK=1.
FAULT = """
import os, sys, time
if os.environ.get("FAULT") and os.environ.get("RANK") == "1":
    import builtins
    real_import, done = builtins.__import__, []

    def hook(name, *args, **kwargs):
        module = real_import(name, *args, **kwargs)
        images = sys.modules.get("vaecli.images")
        if not done and images is not None and hasattr(images, "to_unit"):
            done.append(1)
            real, count = images.to_unit, [0]

            def to_unit(x):
                count[0] += 1
                if count[0] == int(os.environ["FAULT_STEP"]):
                    open(os.environ["FAULT_TIME"], "w").write(repr(time.time()))
                    if os.environ["FAULT"] == "kill":
                        os.kill(os.getpid(), 9)
                    from vaecli.errors import TrainingError
                    raise TrainingError("the injected fault of rank 1")
                return real(x)

            images.to_unit = to_unit
        return module

    builtins.__import__ = hook

# the launcher looks at its processes every 3 s instead of 0.1 s: the surviving rank sees its
# collective fail (connection reset) long before the launcher stops it
if os.environ.get("FAULT_SLOW_LAUNCHER") and "RANK" not in os.environ:
    import torch.distributed.run as run
    parser = run.get_args_parser

    def slow():
        p = parser()
        p.set_defaults(monitor_interval=3.0)
        return p

    run.get_args_parser = slow
"""


@pytest.mark.parametrize("fault", ["kill", "raise", "kill-slow-launcher"])
def test_a_rank_that_dies_or_raises_stops_the_run_with_one_message(tmp_path, fault):
    """Under `vae train --nproc 2`, rank 1 is killed (or raises) in epoch 2: the other process
    stops within seconds, the user reads one error line (the dead rank's, or the launcher's for a
    rank killed without a word) and where to resume, and the last checkpoint is intact. With a
    slow launcher, rank 0's collective fails first: it waits, silent, to be stopped."""
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(FAULT)
    slow = fault.endswith("-slow-launcher")
    fault = fault.removesuffix("-slow-launcher")
    env = dict(_env(), FAULT=fault, FAULT_STEP="90", FAULT_TIME=str(tmp_path / "fault-time"))
    if slow:
        env["FAULT_SLOW_LAUNCHER"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "inject"), env.get("PYTHONPATH", "")])
    data = ["--data-option", "n_train=2000", "--data-option", "n_test=200", "--data-option", "size=8"]
    cmd = [sys.executable, "-m", "vaecli", "train", "shapes", *data, "--arch-option", "hidden=32", "--latent-dim", "3"]
    cmd += ["--batch-size", "32", "--epochs", "3", "--save-every", "25", "--device", "cpu", "--nproc", "2"]
    proc = subprocess.run(
        [*cmd, "-o", "k.safetensors"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    import time

    assert time.time() - float((tmp_path / "fault-time").read_text()) < 15  # the fault, to the launcher's exit
    assert proc.returncode == (128 + 9 if fault == "kill" else 1), proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error")]
    assert "Traceback" not in proc.stderr
    resume = "k.safetensors is intact (in epoch 2 at step 12): resume with vae train --resume k.safetensors --nproc 2"
    if fault == "kill":
        assert errors == [f"error: training process 1 of 2 was killed (SIGKILL); the others were stopped; {resume}"]
    else:
        assert errors == ["error (rank 1 of 2): the injected fault of rank 1"], "\n".join(lines)
        assert lines[-1] == f"the other training processes were stopped; {resume}"
    saved = vaecli.metadata(tmp_path / "k.safetensors")
    assert saved["epoch"] == 1 and saved["progress"]["step"] == 12  # step 75 of the run
    assert len((tmp_path / "k.metrics.jsonl").read_text().splitlines()) == 1
    assert vaecli.load(tmp_path / "k.safetensors").latent_dim == 3


def test_a_collective_that_lost_its_peer_is_told_from_a_process_own_failure():
    """Only a failed collective waits for the launcher; a process's own error leaves at once."""
    import torch.distributed as dist

    from vaecli.errors import TrainingError
    from vaecli.training import distributed

    reset = "[../gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:930: Connection reset by peer."
    assert distributed.lost_peer(RuntimeError(reset))
    assert distributed.lost_peer(dist.DistNetworkError("the store went away"))
    assert not distributed.lost_peer(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not distributed.lost_peer(TrainingError("the loss is not finite"))
    assert not distributed.lost_peer(ValueError("gloo"))
    world = distributed.World(rank=1, size=2, backend="gloo")
    with pytest.raises(VaeError, match=r"^rank 1 of 2 lost the other training processes: \[\.\./gloo.*peer\.$"):
        distributed.await_stop(world, RuntimeError(reset + "\nmore"), seconds=0)


def test_a_stop_signal_held_before_the_collective_failed_takes_effect_at_once():
    """The launcher's SIGTERM can come while the loop holds it (to save at the end of its step),
    before the collective with the dead peer fails: the process then dies of it at once, silent,
    rather than wait for a second signal that never comes (torchrun's 30 s grace, then SIGKILL)."""
    import time

    code = (
        "from vaecli.training import distributed as d\n"
        "d.failed(d.World(rank=0, size=2, backend='gloo'), RuntimeError('Connection reset by peer'), 'SIGTERM')\n"
    )
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -15 and not proc.stderr.strip() and time.perf_counter() - start < 30
