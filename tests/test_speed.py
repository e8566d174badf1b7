"""The fast paths of training, checked for what they compute (speed itself is measured in
benchmarks/, never here): mixed precision (bf16, fp16 with loss scaling, auto), the fused
optimizer, and --compile."""

from __future__ import annotations

import shutil

import pytest
import torch

import vaecli
from conftest import TINY_ARCH, TINY_CLI, TINY_DATA, ends_in_error, one_line_error, tiny_run
from vaecli import checkpoint, evaluation, factory, training
from vaecli.factory import create_model as from_config
from vaecli.factory import model_section as model_config
from vaecli.training import MixedPrecision, TrainConfig, precision

pytestmark = pytest.mark.usefixtures("one_thread")


def _train(**kw):
    return vaecli.train(**tiny_run(**{"epochs": 2, "out": "m.safetensors", "force": True, **kw}))


def _tiny_model(arch="mlp"):
    meta = model_config(TrainConfig(arch=arch, arch_options=dict(TINY_ARCH) if arch == "mlp" else {"channels": "4"}))
    meta["input_shape"] = [1, 8, 8]
    return from_config(meta)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mixed_precision_multiplies_in_16_bits_and_keeps_loss_terms_in_fp32(arch, dtype):
    torch.manual_seed(0)
    model = _tiny_model(arch)
    x = torch.rand(5, 1, 8, 8)
    seen = []
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            m.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    with torch.autocast("cpu", dtype=dtype):
        mean, logvar = model.posterior(x)
        params = model.likelihood_params(mean)
        terms = model(x, 1.0, torch.Generator().manual_seed(1))
    assert set(seen) == {dtype}  # every layer ran in 16 bits
    assert mean.dtype == logvar.dtype == params.dtype == torch.float32  # what the loss sees
    assert terms.objective.dtype == terms.recon.dtype == terms.kl.dtype == torch.float32
    with torch.no_grad():
        exact = model(x, 1.0, torch.Generator().manual_seed(1))
    # 16-bit products: close to the fp32 loss, not equal to it
    assert terms.objective.item() != exact.objective.item()
    assert terms.objective.item() == pytest.approx(exact.objective.item(), rel=0.02)
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_is_bf16_only_where_the_hardware_has_it(monkeypatch, native, expected):
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    result = _train(epochs=1)
    meta = checkpoint.read(result.path).meta
    assert meta["training"]["precision"] == expected  # the resolved choice is recorded, not "auto"
    assert all(p.dtype == torch.float32 for p in result.model.parameters())


def test_precisions_train_to_similar_losses_and_the_test_pass_is_fp32():
    results = {p: _train(precision=p, epochs=3, out=f"{p}.safetensors") for p in ("fp32", "bf16", "fp16")}
    losses = {p: r.metrics[-1]["test_nelbo"] for p, r in results.items()}
    assert len(set(losses.values())) == 3  # three different runs
    for p in ("bf16", "fp16"):
        assert losses[p] == pytest.approx(losses["fp32"], rel=0.03)
    # the reported test -ELBO is the fp32 evaluation of the weights, as `vae evaluate -k 1` does it
    for _p, r in results.items():
        again = evaluation.test_pass(factory.load(r.path), *_test_split())
        assert again["nelbo"] == r.metrics[-1]["test_nelbo"]
    fp16 = checkpoint.read("fp16.safetensors").tensors
    scale = float(fp16["amp.scale"])
    assert scale > 0 and scale == 2.0 ** round(torch.log2(torch.tensor(scale)).item())
    assert "amp.scale" not in checkpoint.read("bf16.safetensors").tensors


def _test_split():
    from vaecli.data import load_dataset

    data = load_dataset("shapes", dict(TINY_DATA), None, False)
    return (data.splits.test.images,)


def test_fp16_loss_scaling_skips_a_step_whose_gradients_overflow():
    torch.manual_seed(0)
    model = _tiny_model()
    amp = MixedPrecision("fp16", torch.device("cpu"))
    opt = training.make_optimizer(TrainConfig(), model.parameters(), torch.device("cpu"))
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.rand(4, 1, 8, 8)
    with amp.autocast():
        loss = model(x, 1.0, torch.Generator().manual_seed(1)).objective
    amp.backward(loss * float("inf"))  # overflows at any scale
    amp.step(opt)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # skipped
    assert amp.state()["amp.scale"].item() == 2.0**15  # halved from 2^16
    opt.zero_grad()
    with amp.autocast():
        loss = model(x, 1.0, torch.Generator().manual_seed(1)).objective
    amp.backward(loss)
    amp.step(opt)
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # this one is taken


def test_unknown_precision_is_one_line(vae):
    one_line_error(vae("train", *TINY_CLI, "--precision", "fp8"), 2, "fp8", "fp32", "bf16", "fp16")


def test_a_compiler_failure_is_one_line(vae, monkeypatch):
    def broken(fn, **kw):
        def call(*a, **k):
            raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    result = vae("train", *TINY_CLI, "--epochs", "1", "--compile", "-o", "c.safetensors")
    ends_in_error(result, 2, "--compile: torch.compile failed", "InvalidCxxCompiler", "train without --compile")


@pytest.mark.skipif(
    not (shutil.which("g++") or shutil.which("c++")), reason="torch.compile on the CPU needs a C++ compiler"
)
def test_compiled_training_computes_what_eager_training_does():
    eager = _train(precision="fp32", epochs=1, out="eager.safetensors")
    compiled = _train(precision="fp32", epochs=1, compile=True, out="compiled.safetensors")
    a, b = eager.metrics[-1], compiled.metrics[-1]
    assert b["test_nelbo"] == pytest.approx(a["test_nelbo"], rel=1e-3)
    assert b["train_nelbo"] == pytest.approx(a["train_nelbo"], rel=1e-3)
    # the checkpoint is an ordinary one: the parameter names are the model's own
    assert sorted(checkpoint.read("compiled.safetensors").tensors) == sorted(
        checkpoint.read("eager.safetensors").tensors
    )
    assert vaecli.metadata("compiled.safetensors")["training"]["compile"] is True


# What makes the host wait for a GPU: a tensor's value read into Python.
WAITS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy")


@pytest.mark.parametrize("family", ["vae", "iwae"])
def test_the_steps_of_an_epoch_never_wait_for_the_device(monkeypatch, family):
    """The training loop reads no tensor's value per step (on a GPU each read would stall the
    queue of kernels): an epoch of 60 steps reads exactly as many values as one of 30, its test
    pass and checkpoint included; the running sums are read once, at the end."""
    from vaecli.training import trainer

    counted = {"on": False, "reads": 0}
    for name in WAITS:
        real = getattr(torch.Tensor, name)

        def wrapper(self, *args, _real=real, **kwargs):
            counted["reads"] += counted["on"]
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    epoch = trainer.Trainer._epoch

    def watched(self, *args):
        counted["on"] = True
        try:
            return epoch(self, *args)
        finally:
            counted["on"] = False

    monkeypatch.setattr(trainer.Trainer, "_epoch", watched)
    reads = []
    for n_train in (960, 1920):  # 30 and 60 steps of 32
        counted["reads"] = 0
        options = {**TINY_DATA, "n_train": n_train}
        settings = dict(dataset_options=options, model=family, precision="fp32", epochs=1, out=f"{n_train}.safetensors")
        vaecli.train(**tiny_run(**settings))
        reads.append(counted["reads"])
    assert trainer.CHECK_STEPS > 60  # no finiteness check inside these epochs
    assert reads[0] == reads[1] and reads[0] > 0, reads  # > 0: the counting works
