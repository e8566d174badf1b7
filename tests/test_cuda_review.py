"""The findings of the CUDA review (../shared/reviews/cuda-readiness.md, docs/reliability.md's
table), shown on the CPU: each test stands in for the GPU with the part of torch the finding is
about (a device that says it is CUDA, an older torch's signature, a capability, an exception of
the compiler) and fails on the code before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vaecli
from conftest import TINY_CLI, ends_in_error, one_line_error, tiny_run
from vaecli import device as devices
from vaecli.errors import UsageError, VaeError
from vaecli.training import distributed, placement, precision

CUDA = torch.device("cuda")


# -- F1: the data on the GPU is placed by what fits, and counted ----------------------------------


def test_f1_the_data_counts_against_the_gpus_free_memory(monkeypatch):
    monkeypatch.setattr(placement, "free_bytes", lambda device: 1000)
    assert placement.fits_on_device(800, CUDA, reserved=0)
    assert not placement.fits_on_device(800, CUDA, reserved=200)  # the model and its batch come first
    assert not placement.fits_on_device(10**12, CUDA, reserved=0, max_memory_gib=1.0)
    assert placement.fits_on_device(10**12, torch.device("cpu"), reserved=0)  # nothing is copied there


def test_f1_streamed_batches_train_what_resident_ones_do(monkeypatch):
    a = vaecli.train(**tiny_run(epochs=2, out="resident.safetensors"))
    said = []
    monkeypatch.setattr(placement, "fits_on_device", lambda *args: False)
    monkeypatch.setattr("vaecli.training.report.Silent.warn", lambda self, text: said.append(text), raising=False)
    b = vaecli.train(**tiny_run(epochs=2, out="streamed.safetensors"))
    ta, tb = load_file(a.path), load_file(b.path)
    assert all(torch.equal(ta[k], tb[k]) for k in ta if k.startswith("model."))
    assert a.metrics[-1]["test_nelbo"] == b.metrics[-1]["test_nelbo"]


def test_f1_batches_are_copied_ahead_of_their_step(monkeypatch):
    images = torch.arange(10, dtype=torch.uint8).reshape(10, 1)
    placed = placement.Placed(images, torch.device("cpu"), resident=False)
    copied = []
    real = placed._copy
    monkeypatch.setattr(placed, "_copy", lambda index: copied.append(index.tolist()) or real(index))
    order = torch.tensor([3, 1, 4, 0, 9, 2])
    seen = []
    for _idx, rows in placed.batches(order, 2):
        seen.append((len(copied), rows.flatten().tolist()))
    assert seen == [(2, [3, 1]), (3, [4, 0]), (3, [9, 2])]  # batch j+1 was copying while step j ran


# -- F2, F3, F12: APIs of the torch versions the floor allows -------------------------------------


def test_f2_free_memory_of_cuda_without_an_index(monkeypatch):
    def old_mem_get_info(device=None):  # torch before 2.5: an index, or a device that has one
        if isinstance(device, torch.device) and device.index is None:
            raise ValueError("Expected a torch.device with a specified index or an integer, but got:cuda")
        return (123, 456)

    monkeypatch.setattr(torch.cuda, "mem_get_info", old_mem_get_info)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert devices.free_bytes(CUDA) == 123
    assert devices.free_bytes(torch.device("cuda", 1)) == 123


@pytest.mark.parametrize("capability, auto", [((7, 5), "fp32"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_f3_bf16_is_asked_of_the_gpus_capability(monkeypatch, capability, auto):
    def old_is_bf16_supported():  # torch 2.2/2.3 take no including_emulation; later say yes to emulation
        return True

    asked = []
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", old_is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: asked.append(d) or capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Tesla T4")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert precision.resolve_precision("auto", torch.device("cuda", 1)) == auto
    assert asked == [1]  # the GPU named, not the current one
    if auto == "fp32":
        with pytest.raises(UsageError, match=r"Tesla T4, compute capability 7.5\) has no bfloat16"):
            precision.resolve_precision("bf16", CUDA)
    else:
        assert precision.resolve_precision("bf16", CUDA) == "bf16"


def test_f12_the_declared_floor_is_the_tested_one():
    import tomllib

    deps = tomllib.loads(Path(__file__).parents[1].joinpath("pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch>=2.4" in deps and "torchvision>=0.19" in deps
    ci = Path(__file__).parents[1].joinpath(".ci/run").read_text()
    assert "torch==2.4.1" in ci and "torchvision==0.19.1" in ci  # .ci/run tests that floor
    assert hasattr(torch.amp, "GradScaler")  # fp16's scaler: in torch.amp since 2.3


# -- F4: samplers draw with a CPU generator on every device --------------------------------------


def test_f4_the_explorer_hands_fitted_samplers_a_cpu_generator(monkeypatch, tiny_ckpt):
    pytest.importorskip("starlette", reason="vae explore's extra is not installed")
    from vaecli import api, inputs
    from vaecli.explorer import Explorer

    model = api.load(tiny_ckpt, "cpu")
    explorer = Explorer(model, Path(tiny_ckpt), inputs.load_input("shapes:test", model.meta, limit=8))
    got = []

    class Spy:
        def sample(self, n, generator, model):
            got.append(generator.device.type)
            return torch.randn(n, model.latent_dim, generator=generator)  # CPU ops, as the built-ins

    explorer.fitted["spy"] = Spy()
    explorer.samplers.append("spy")
    monkeypatch.setattr(type(model), "device", property(lambda self: CUDA))  # a model on a GPU
    z = explorer.draw({"sampler": "spy", "seed": 3})["z"]
    assert got == ["cpu"] and len(z) == model.latent_dim


def test_f4_the_prior_sampler_draws_on_the_models_device_from_any_generator(tiny_ckpt):
    from vaecli import api
    from vaecli.samplers import Prior

    model = api.load(tiny_ckpt, "cpu")
    same = Prior.sample(None, 4, torch.Generator().manual_seed(1), model)
    assert torch.equal(same, model.prior_sample(4, torch.Generator().manual_seed(1)))  # unchanged on the CPU


# -- F5, F15c, F15d: resuming elsewhere ---------------------------------------------------------


def test_f5_resume_may_change_precision_and_compile_and_info_says_so(vae):
    assert (
        vae("train", "shapes", *TINY_CLI, "--epochs", "1", "--precision", "fp32", "-o", "r.safetensors").exit_code == 0
    )
    result = vae("train", "--resume", "r.safetensors", "--epochs", "2", "--precision", "bf16", "--no-compile")
    assert result.exit_code == 0, result.output
    training = vaecli.metadata("r.safetensors")["training"]
    assert training["precision"] == "bf16" and training["resumes"] == [
        {"after_epoch": 1, "precision": ["fp32", "bf16"]}
    ]
    shown = " ".join(vae("info", "r.safetensors").stdout.split())
    assert "resumed after epoch 1 with precision bf16 (was fp32)" in shown


def test_f5_a_run_records_what_it_was_asked_and_resume_resolves_it_again(vae):
    assert vae("train", "shapes", *TINY_CLI[:-2], "--epochs", "1", "-o", "a.safetensors").exit_code == 0
    training = vaecli.metadata("a.safetensors")["training"]
    assert training["asked"] == {"device": "auto", "precision": "auto"}
    assert training["device"] == "cpu" and training["precision"] in ("fp32", "bf16")  # what it ran on


def test_f15c_resuming_on_the_cpu_leaves_cuda_alone(monkeypatch):
    vaecli.train(**tiny_run(epochs=1, out="c.safetensors"))
    from vaecli import checkpoint

    ckpt = checkpoint.read(Path("c.safetensors"))
    ckpt.tensors["rng.cuda"] = torch.zeros(16, dtype=torch.uint8)  # as a GPU-trained checkpoint holds

    def no_cuda(*args):
        raise AssertionError("CUDA touched")

    monkeypatch.setattr(torch.cuda, "set_rng_state", no_cuda)
    checkpoint.restore_rng(ckpt, torch.device("cpu"))


# -- F6, F8, F10: the ranks of a distributed run ----------------------------------------------


@pytest.mark.parametrize("rank, local_rank, turn", [(0, 0, 0), (8, 0, 1), (3, 3, 2), (9, 1, 2)])
def test_f10_rank_0_loads_first_then_each_nodes_first_rank_then_the_rest(monkeypatch, rank, local_rank, turn):
    barriers = []
    monkeypatch.setattr(distributed.World, "barrier", lambda self, loading: barriers.append("barrier"))
    world = distributed.World(rank=rank, size=16, local_rank=local_rank, backend="nccl")
    assert world.in_turn(lambda: barriers.append("load") or "data") == "data"
    assert barriers.index("load") == turn and barriers.count("barrier") == 3  # every rank meets every barrier


def test_f6_the_loading_barrier_waits_hours_on_a_gloo_group(monkeypatch):
    import torch.distributed as dist

    made = {}
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "new_group", lambda **kw: made.update(kw) or "group")
    distributed.start(distributed.World(rank=1, size=2, local_rank=1), torch.device("cpu"))
    assert made["backend"] == "gloo" and made["timeout"].total_seconds() >= 3600


def test_f8_decisions_and_the_batch_order_are_rank_0s(monkeypatch):
    import torch.distributed as dist

    def from_rank_0(tensor, src):
        assert src == 0
        tensor.copy_(torch.ones_like(tensor) if tensor.is_floating_point() else torch.arange(len(tensor)))

    monkeypatch.setattr(dist, "broadcast", from_rank_0)
    world = distributed.World(rank=1, size=2, local_rank=1, backend="gloo")
    assert world.agree(False, torch.device("cpu"))  # rank 0 stops: so does this rank
    assert world.same_order(torch.tensor([2, 0, 1])).tolist() == [0, 1, 2]


# -- F7, F9, F13, F15: what a run says --------------------------------------------------------


def test_f7_a_batch_level_family_says_it_runs_per_rank():
    from vaecli.builtin.regularized import WAE

    said = []
    model = vaecli.VAE.__new__(WAE)
    world = distributed.World(rank=0, size=4, local_rank=0, backend="gloo")
    with pytest.raises((RuntimeError, ValueError, AttributeError)):  # no process group: DDP fails after the warning
        distributed.wrap(model, world, torch.device("cpu"), said.append)
    assert len(said) == 1 and "MMD" in said[0] and "4 processes" in said[0]


def test_f9_an_nccl_failure_of_this_machine_is_one_line_at_once():
    exc = RuntimeError("NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled system error (run with NCCL_DEBUG=INFO)")
    assert not distributed.lost_peer(exc)
    with pytest.raises(VaeError, match="NCCL failed on this machine.*shm-size"):
        distributed.failed(distributed.World(rank=1, size=2, local_rank=1, backend="nccl"), exc)


class InductorError(RuntimeError):
    __module__ = "torch._inductor.exc"


def test_f13_a_compiler_failure_after_the_first_call_or_in_backward_is_one_line():
    calls = []

    def compiled(*args):
        calls.append(args)
        if len(calls) > 1:  # the recompile for the last, smaller batch
            raise InductorError("ptxas fatal: out of shared memory")
        return "out"

    step = precision.Compiled.__new__(precision.Compiled)
    step.call, step.compiled = compiled, False
    assert step(1) == "out"
    with pytest.raises(UsageError, match="--compile: torch.compile failed .*InductorError.*--no-compile"):
        step(2)
    with pytest.raises(ValueError), precision.compiler_failures():  # not the compiler's: passes as it is
        raise ValueError("a bug")


def test_f15a_a_gpu_out_of_memory_is_one_line(vae, tiny_ckpt, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr("vaecli.evaluation.evaluate", oom)
    monkeypatch.setattr("vaecli.api.evaluate", oom)
    result = vae("evaluate", tiny_ckpt, "shapes:test", "-k", "2")
    ends_in_error(result, 1, "out of memory on the GPU", "Tried to allocate 20.00 GiB", "--batch-size")


def test_f15b_a_gpu_index_this_machine_lacks_is_one_line(vae, monkeypatch, tiny_ckpt):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for name in ("cuda:7", "cuda:x"):
        one_line_error(vae("sample", tiny_ckpt, "--device", name, "-o", "s.png"), 2, f"--device {name}", "1 GPU(s)")


def test_f11_fp32_on_a_gpu_is_not_tf32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:  # set and put back by hand: torch 2.4's matmul flags are not attributes monkeypatch can undo
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        assert devices.resolve_device("cuda") == CUDA
        assert torch.backends.cudnn.allow_tf32 is False and torch.backends.cuda.matmul.allow_tf32 is False
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_f14c_a_batch_on_the_gpu_reads_no_mapping(monkeypatch):
    from vaecli import datacache, images

    touched = []
    monkeypatch.setattr(datacache, "touched", touched.append)
    images.to_unit(torch.zeros(2, 3, dtype=torch.uint8, device="meta"))
    images.to_unit(torch.zeros(2, 3, dtype=torch.uint8))
    assert touched == [6]  # the CPU batch only


def test_the_gpu_check_script_parses_and_names_every_check():
    import subprocess

    script = Path(__file__).parents[1] / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    for check in ("bf16 fp16 fp32", "--resume", "--sampler gmm", "--compile", "--nproc 2", "skipped: no CUDA GPU"):
        assert check in text
