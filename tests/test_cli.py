"""Every command through typer's CliRunner, error paths included: exit code, one-line message,
no traceback, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import TINY_CLI
from conftest import ends_in_error as _one_line_error

# -- train ------------------------------------------------------------------------------------


def test_train_writes_a_checkpoint_and_reports_the_test_elbo(vae):
    result = vae("train", *TINY_CLI, "--epochs", "2", "-o", "m.safetensors")
    assert result.exit_code == 0, result.output
    assert Path("m.safetensors").is_file()
    assert "Saved m.safetensors after 2 epochs" in result.stdout
    assert result.stderr.count("test -ELBO") == 2  # one summary line per epoch
    info = json.loads(vae("info", "m.safetensors", "--json").stdout)
    assert info["epoch"] == 2
    reported = float(result.stdout.split("test -ELBO ")[1].split()[0])
    assert reported == pytest.approx(info["metrics"][-1]["test_nelbo"], abs=0.01)
    assert not [p for p in Path(".").iterdir() if p.name.endswith(".tmp")]


def test_train_refuses_to_overwrite_without_force(vae):
    assert vae("train", *TINY_CLI, "--epochs", "1", "-o", "m.safetensors").exit_code == 0
    before = Path("m.safetensors").read_bytes()
    _one_line_error(vae("train", *TINY_CLI, "--epochs", "1", "-o", "m.safetensors"), 2, "already exists", "--force")
    assert Path("m.safetensors").read_bytes() == before
    assert vae("train", *TINY_CLI, "--epochs", "1", "--seed", "5", "-o", "m.safetensors", "--force").exit_code == 0
    assert Path("m.safetensors").read_bytes() != before


def test_default_output_names_are_numbered_not_overwritten(vae):
    for _ in range(2):
        assert vae("train", *TINY_CLI, "--epochs", "1").exit_code == 0
    assert sorted(p.name for p in Path(".").glob("*.safetensors")) == [
        "shapes-mlp-2.safetensors",
        "shapes-mlp.safetensors",
    ]


def test_plain_autoencoder_trains_with_zero_kl(vae):
    assert vae("train", *TINY_CLI, "--epochs", "1", "--model", "ae", "-o", "ae.safetensors").exit_code == 0
    info = json.loads(vae("info", "ae.safetensors", "--json").stdout)
    assert info["model"]["kind"] == "ae"
    record = info["metrics"][0]
    assert "test_kl" not in record and "train_nelbo" not in record  # no KL, no ELBO: its one term
    assert record["test_recon"] > 0 and record["train_objective"] == pytest.approx(record["train_recon"], rel=1e-5)


def test_train_options_reach_the_model(vae):
    result = vae(
        "train",
        *TINY_CLI,
        "--epochs",
        "1",
        "--arch-option",
        "activation=tanh",
        "--likelihood",
        "gaussian",
        "--likelihood-option",
        "learn_sigma=shared",
        "-o",
        "g.safetensors",
    )
    assert result.exit_code == 0, result.output
    info = json.loads(vae("info", "g.safetensors", "--json").stdout)
    assert info["model"]["architecture"]["options"] == {"hidden": [32], "activation": "tanh"}
    assert info["model"]["likelihood"]["options"]["learn_sigma"] == "shared"
    assert info["data"]["dataset"]["options"]["size"] == 8


@pytest.mark.parametrize(
    "args,needles",
    [
        (
            ["train", "nosuchdata"],
            [
                "unknown dataset 'nosuchdata'",
                "3dshapes, binarized-mnist, celeba, cifar10, cifar100, dsprites, emnist, fashion-mnist, folder, kmnist, mnist, omniglot, shapes, svhn, table, tensor",
            ],
        ),
        (["train", "--arch", "nosuch"], ["unknown architecture 'nosuch'", "mlp"]),
        (
            ["train", "--likelihood", "zipf"],
            ["unknown likelihood 'zipf'", "bernoulli, continuous-bernoulli, gaussian, logistic"],
        ),
        (["train", "--model", "gan"], ["unknown model 'gan'", "ae, ciwae, cvae"]),
        (["train", "--epochs", "0"], ["--epochs must be at least 1"]),
        (["train", "--lr", "-1"], ["--lr must be a positive number"]),
        (["train", "--batch-size", "0"], ["--batch-size must be at least 1"]),
        (["train", "--arch-option", "depth=3"], ["no option depth", "hidden=400"]),
        (["train", "--arch-option", "hidden=abc"], ["hidden"]),
        (["train", "--arch-option", "activation=swish"], ["activation must be one of"]),
        (["train", "--arch-option", "oops"], ["KEY=VALUE"]),
        (["train", "-o", "model.pt"], ["must end in .safetensors"]),
        (["train", "-o", "no/such/folder/m.safetensors"], ["does not exist"]),
        (["train", "--device", "tpu"], ["unknown device 'tpu'"]),
    ],
)
def test_train_usage_errors(vae, args, needles):
    _one_line_error(vae(*args), 2, *needles)
    assert not list(Path(".").iterdir())  # nothing written


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_train_on_cuda_without_a_gpu_is_a_clear_error(vae):
    _one_line_error(vae("train", "--device", "cuda"), 2, "no CUDA GPU")


def test_mnist_missing_offline_says_where_it_looked(vae, tmp_path):
    line = _one_line_error(
        vae("train", "mnist", "--data-dir", tmp_path / "empty", "--no-download"),
        1,
        "MNIST files not found",
        "--no-download",
    )
    assert str(tmp_path / "empty" / "MNIST" / "raw") in line


# -- sample -----------------------------------------------------------------------------------


def test_sample_writes_a_grid_of_the_right_size(vae, tiny_ckpt):
    result = vae("sample", tiny_ckpt, "-n", "6", "--nrow", "3", "-o", "grid.png")
    assert result.exit_code == 0, result.output
    # 8x8 images are scaled x8 to 64 px, with 16 px of padding around each
    assert Image.open("grid.png").size == (3 * 80 + 16, 2 * 80 + 16)
    assert "Wrote 6 samples to grid.png" in result.stdout


def test_sample_is_seeded_and_temperature_matters(vae, tiny_ckpt):
    arrays = {}
    for name, extra in [("a", []), ("b", []), ("c", ["--seed", "1"]), ("d", ["--temperature", "0.1"])]:
        assert vae("sample", tiny_ckpt, "-n", "4", "-o", f"{name}.png", *extra).exit_code == 0
        arrays[name] = Image.open(f"{name}.png").tobytes()
    assert arrays["a"] == arrays["b"]
    assert arrays["a"] != arrays["c"]
    assert arrays["a"] != arrays["d"]


def test_sample_mode_sample_draws_binary_pixels(vae, tiny_ckpt):
    assert vae("sample", tiny_ckpt, "-n", "4", "--nrow", "4", "--mode", "sample", "-o", "s.png").exit_code == 0
    pixels = set(Image.open("s.png").convert("L").tobytes())
    assert pixels <= {0, 128, 255}  # black or white pixels, grey padding


def test_sample_default_output_sits_beside_the_checkpoint(vae, tiny_ckpt):
    assert vae("sample", tiny_ckpt, "-n", "2").exit_code == 0
    expected = tiny_ckpt.with_name("tiny-samples.png")
    assert expected.is_file()
    expected.unlink()


@pytest.mark.parametrize(
    "args,needles",
    [
        (["-n", "0"], ["-n must be at least 1"]),
        (["-n", "-3"], ["-n must be at least 1"]),
        (["-n", "100000000"], ["-n must be at most"]),
        (["--temperature", "0"], ["--temperature must be a positive number"]),
        (["--mode", "median"], ["--mode must be"]),
        (["-o", "grid.txt"], ["must end in one of .png"]),
        (["-o", "missing/grid.png"], ["does not exist"]),
    ],
)
def test_sample_usage_errors(vae, tiny_ckpt, args, needles):
    _one_line_error(vae("sample", tiny_ckpt, *args), 2, *needles)
    assert not list(Path(".").iterdir())


def test_non_numeric_n_is_a_usage_error(vae, tiny_ckpt):
    result = vae("sample", tiny_ckpt, "-n", "lots")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "content,needle",
    [
        (None, "no such file"),
        (b"", "is empty"),
        (b"\x80\x04\x95garbage", "pickle"),
        (b"\x00\x01\x02 random bytes \xff" * 20, "not a readable safetensors"),
    ],
)
@pytest.mark.parametrize("command", ["sample", "info"])
def test_commands_refuse_what_is_not_a_checkpoint(vae, command, content, needle):
    path = Path("bad.safetensors")
    if content is not None:
        path.write_bytes(content)
    _one_line_error(vae(command, path), 2, needle)
    assert not list(Path(".").glob("*.png"))


def test_debug_shows_the_traceback(vae, monkeypatch):
    from vaecli.errors import CheckpointError

    result = vae("--debug", "info", "missing.safetensors")
    assert isinstance(result.exception, CheckpointError)


# -- info, plugins, entry points --------------------------------------------------------------


def test_info_prints_a_readable_table(vae, tiny_ckpt):
    result = vae("info", tiny_ckpt)
    assert result.exit_code == 0, result.output
    for needle in (
        "VAE, latent dim 3",
        "mlp",
        "hidden=32",
        "bernoulli",
        "shapes",
        "square, ellipse, heart",
        "epochs 2/2",
        "test -ELBO",
    ):
        assert needle in result.stdout, needle


def test_info_json_has_the_epoch_and_parameter_count(vae, tiny_ckpt):
    meta = json.loads(vae("info", tiny_ckpt, "--json").stdout)
    assert meta["epoch"] == 2
    # 64 -> 32 -> 2*3 encoder, 3 -> 32 -> 64 decoder
    assert meta["parameters"] == (64 * 32 + 32) + (32 * 6 + 6) + (3 * 32 + 32) + (32 * 64 + 64)
    assert len(meta["metrics"]) == 2


def test_plugins_lists_the_built_ins(vae):
    result = vae("plugins")
    assert result.exit_code == 0
    for needle in ("architectures", "likelihoods", "datasets", "mlp", "bernoulli", "gaussian", "shapes", "mnist"):
        assert needle in result.stdout
    data = json.loads(vae("plugins", "--json").stdout)
    builtins = {p["name"]: p for p in data["plugins"] if p["builtin"]}
    assert builtins["likelihoods"]["registers"] == {
        "likelihood": ["bernoulli", "continuous-bernoulli", "gaussian", "logistic", "negbin", "poisson", "table"]
    }
    assert all(p["distribution"] == "vaecli" and p["error"] is None for p in builtins.values())
    assert data["parts"]["architecture"]["mlp"]["options"] == "hidden=400, activation=relu"


def test_version(vae):
    import vaecli

    assert vae("--version").stdout.strip() == f"vae {vaecli.__version__}"


def test_python_dash_m_and_console_script_start():
    for cmd in ([sys.executable, "-m", "vaecli", "--help"], ["vae", "--help"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "train" in proc.stdout and "sample" in proc.stdout


def test_help_does_not_import_torch():
    code = "import sys; from vaecli.cli import app; from vaecli.plugins import registry; registry(); print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr


def test_ctrl_c_keeps_the_last_checkpoint_and_exits_130(vae, monkeypatch):
    from vaecli.training import trainer

    real = trainer.test_pass
    calls = []

    def interrupt_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "test_pass", interrupt_in_epoch_two)
    line = _one_line_error(
        vae("train", *TINY_CLI, "--epochs", "3", "-o", "m.safetensors"), 130, "interrupted in epoch 2"
    )
    assert "m.safetensors holds 1 completed epoch; resume with: vae train --resume m.safetensors --epochs 3" in line
    assert json.loads(vae("info", "m.safetensors", "--json").stdout)["epoch"] == 1


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(vae, monkeypatch):
    from vaecli.training import trainer

    real = trainer.to_unit
    batches = []

    def poison_the_second_epoch(images):
        batches.append(1)
        x = real(images)
        return x * float("nan") if len(batches) == 5 else x  # 3 train batches per epoch: step 2 of epoch 2

    monkeypatch.setattr(trainer, "to_unit", poison_the_second_epoch)
    line = _one_line_error(
        vae("train", *TINY_CLI, "--epochs", "3", "-o", "m.safetensors"), 1, "non-finite in epoch 2 at step 2 of 3"
    )
    assert "m.safetensors holds 1 completed epoch" in line
    assert json.loads(vae("info", "m.safetensors", "--json").stdout)["epoch"] == 1


def test_sample_of_a_folder_is_a_one_line_error(vae):
    _one_line_error(vae("sample", "."), 2, "is a folder")


def test_an_error_message_is_cut_to_its_first_line():
    from vaecli.errors import first_line

    assert first_line(RuntimeError("\n  shapes differ\n  at frame 3\n")) == "shapes differ"
    assert first_line(ValueError("")) == "ValueError"  # says nothing: its kind
    assert first_line(OSError("x" * 500)) == "x" * 200
