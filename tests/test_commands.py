"""The commands that use a trained model (encode, decode, reconstruct, interpolate, plot-latent,
evaluate) and train's --viz-dir/--tensorboard, through typer's CliRunner.

Outputs are checked as data: pictures are read back with Pillow and cut into the cells of
``viz.grid``'s layout (each image upscaled to at least 64 px, 2*scale px of padding), arrays are
compared with what the model computes, and every bad input is one ``error:`` line with exit 2.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vaecli
from conftest import TINY_CLI, TINY_DATA, one_line_error, tiny_run
from vaecli import checkpoint
from vaecli.data import load_dataset
from vaecli.errors import VaeError
from vaecli.training import trainer

# A latent-2 model trained a little longer than tiny_ckpt (whose latents are nearly unused), for
# the tests whose pictures or estimates must depend on z.
WIDE_DATA = {"n_train": 384, "n_test": 256, "size": 8}
SHAPES = ["square", "ellipse", "heart"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _train(folder: Path, name: str, **settings) -> Path:
    path = folder / f"{name}.safetensors"
    vaecli.train(out=str(path), **settings)
    return path


@pytest.fixture(scope="module")
def ckpt2d(tmp_path_factory, one_thread):
    return _train(
        tmp_path_factory.mktemp("ckpt2d"),
        "wide",
        dataset="shapes",
        dataset_options=dict(WIDE_DATA),
        arch_options={"hidden": (32,)},
        latent_dim=2,
        epochs=3,
        batch_size=32,
        lr=3e-3,
        device="cpu",
    )


@pytest.fixture(scope="module")
def ae_ckpt(tmp_path_factory, one_thread):
    return _train(
        tmp_path_factory.mktemp("ae"),
        "ae",
        **tiny_run(epochs=1, model="ae"),
    )


# -- helpers ----------------------------------------------------------------------------------


def _ok(result):
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result


def _files(folder: Path = Path(".")) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _scale(h: int = 8, w: int = 8) -> int:
    return max(1, math.ceil(64 / max(h, w)))  # viz.MIN_CELL


def _grid_size(n: int, nrow: int, h: int = 8, w: int = 8) -> tuple[int, int]:
    """(width, height) of torchvision's make_grid of n upscaled images, nrow per row."""
    s = _scale(h, w)
    pad = 2 * s
    cols, rows = min(nrow, n), math.ceil(n / nrow)
    return cols * (w * s + pad) + pad, rows * (h * s + pad) + pad


def _picture(path) -> np.ndarray:
    """A grid picture of grey images as one (H, W) int array (checking that R = G = B)."""
    with Image.open(path) as img:
        rgb = np.asarray(img.convert("RGB")).astype(int)
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    return rgb[..., 0]


def _cell(picture: np.ndarray, row: int, col: int, h: int = 8, w: int = 8) -> np.ndarray:
    s = _scale(h, w)
    pad = 2 * s
    y, x = pad + row * (h * s + pad), pad + col * (w * s + pad)
    return picture[y : y + h * s, x : x + w * s]


def _up(image) -> np.ndarray:
    """An image as the grid shows it: (1, h, w) uint8 or [0, 1] floats -> pixels, upscaled."""
    image = torch.as_tensor(image)
    if image.is_floating_point():
        image = (image.clamp(0, 1) * 255).round()
    array = image[0].numpy().astype(int)
    s = _scale(*array.shape)
    return array.repeat(s, axis=0).repeat(s, axis=1)


def _close(cell: np.ndarray, expected: np.ndarray, tol: int = 1) -> bool:
    return cell.shape == expected.shape and int(np.abs(cell - expected).max()) <= tol


def _test_split(options=TINY_DATA):
    return load_dataset("shapes", dict(options)).splits.test


def _train_split(options=TINY_DATA):
    return load_dataset("shapes", dict(options)).splits.train


def _png(path, array, mode=None):
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode).save(path)
    return path


# -- reconstruct ------------------------------------------------------------------------------


def test_reconstruct_puts_each_row_of_inputs_above_its_reconstructions(vae, tiny_ckpt):
    result = _ok(vae("reconstruct", tiny_ckpt, "-n", "16", "--nrow", "8", "-o", "r.png"))
    width, height = _grid_size(32, 8)  # 16 inputs + 16 reconstructions: 4 rows of 8
    assert (width, height) == (656, 336)
    assert Image.open("r.png").size == (width, height)
    assert f"Wrote 16 images and their reconstructions to r.png ({width}x{height} px)" in result.stdout
    picture = _picture("r.png")
    test = _test_split().images[:16]
    recon = vaecli.load(tiny_ckpt).reconstruct(test)
    for i in range(16):
        row, col = 2 * (i // 8), i % 8
        assert np.array_equal(_cell(picture, row, col), _up(test[i])), f"input {i}"
        assert _close(_cell(picture, row + 1, col), _up(recon[i])), f"reconstruction {i}"


def test_reconstruct_pads_a_short_last_row_with_blanks(vae, tiny_ckpt):
    _ok(vae("reconstruct", tiny_ckpt, "-n", "10", "--nrow", "8", "-o", "r.png"))
    assert Image.open("r.png").size == _grid_size(32, 8)
    picture = _picture("r.png")
    test = _test_split().images
    assert np.array_equal(_cell(picture, 2, 1), _up(test[9]))
    for row in (2, 3):
        for col in range(2, 8):
            assert (_cell(picture, row, col) == 255).all()


def test_reconstruct_of_fewer_images_than_nrow_is_one_column_each(vae, tiny_ckpt):
    _ok(vae("reconstruct", tiny_ckpt, "shapes:test:5", "-o", "r.png"))
    assert Image.open("r.png").size == _grid_size(2, 1)  # the image over its reconstruction
    assert np.array_equal(_cell(_picture("r.png"), 0, 0), _up(_test_split().images[5]))


# -- encode -----------------------------------------------------------------------------------


def test_encode_npy_holds_the_posterior_means(vae, tiny_ckpt):
    result = _ok(vae("encode", tiny_ckpt, "shapes:test", "-o", "z.npy"))
    assert "latent codes of 48 images (3 dimensions)" in result.stdout
    z = np.load("z.npy", allow_pickle=False)
    assert z.shape == (48, 3) and z.dtype == np.float32
    mean, _ = vaecli.load(tiny_ckpt).encode(_test_split().images)
    np.testing.assert_allclose(z, mean.numpy(), rtol=0, atol=1e-6)


def test_encode_safetensors_holds_mean_logvar_and_the_dataset_labels(vae, tiny_ckpt):
    from safetensors import safe_open

    _ok(vae("encode", tiny_ckpt, "shapes:test", "-o", "z.safetensors"))
    with safe_open("z.safetensors", "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    assert set(tensors) == {"mean", "logvar", "labels"}
    assert tensors["mean"].shape == (48, 3) and tensors["logvar"].shape == (48, 3) and tensors["labels"].shape == (48,)
    test = _test_split()
    assert torch.equal(tensors["labels"], test.labels.long())
    mean, logvar = vaecli.load(tiny_ckpt).encode(test.images)
    torch.testing.assert_close(tensors["mean"], mean, rtol=0, atol=1e-6)
    torch.testing.assert_close(tensors["logvar"], logvar, rtol=0, atol=1e-6)
    assert meta["format"] == "vaecli-latents"
    assert json.loads(meta["class_names"]) == SHAPES
    assert json.loads(meta["latent_dim"]) == 3 and json.loads(meta["input"]) == "shapes:test"


def test_encode_csv_has_a_labelled_header_and_the_npy_values(vae, tiny_ckpt):
    _ok(vae("encode", tiny_ckpt, "shapes:test", "-o", "z.csv"))
    _ok(vae("encode", tiny_ckpt, "shapes:test", "-o", "z.npy"))
    rows = list(csv.reader(open("z.csv", newline="")))
    assert rows[0] == ["index", "label", "class", "z0", "z1", "z2"]
    assert len(rows) == 49
    labels = _test_split().labels.tolist()
    assert [int(r[0]) for r in rows[1:]] == list(range(48))
    assert [int(r[1]) for r in rows[1:]] == labels
    assert [r[2] for r in rows[1:]] == [SHAPES[label] for label in labels]
    values = np.array([[float(v) for v in r[3:]] for r in rows[1:]])
    assert np.array_equal(values.astype(np.float32), np.load("z.npy"))  # float repr round-trips


def test_encode_of_a_plain_autoencoder_writes_no_logvar(vae, ae_ckpt):
    from safetensors import safe_open

    _ok(vae("encode", ae_ckpt, "shapes:test", "-o", "z.safetensors"))
    with safe_open("z.safetensors", "pt") as f:
        assert set(f.keys()) == {"mean", "labels"}


# -- decode -----------------------------------------------------------------------------------


def test_decode_of_encoded_means_reproduces_reconstruct(vae, ckpt2d):
    _ok(vae("encode", ckpt2d, "shapes:test", "-o", "z.npy"))
    _ok(vae("encode", ckpt2d, "shapes:test", "-o", "z.csv"))
    _ok(vae("encode", ckpt2d, "shapes:test", "-o", "z.safetensors"))
    _ok(vae("reconstruct", ckpt2d, "-n", "16", "--nrow", "8", "-o", "r.png"))
    result = _ok(vae("decode", ckpt2d, "z.npy", "-n", "16", "--nrow", "8", "-o", "d.png"))
    assert "Wrote 16 decoded images" in result.stdout
    assert Image.open("d.png").size == _grid_size(16, 8)
    r, d = _picture("r.png"), _picture("d.png")
    cells = []
    for i in range(16):
        decoded = _cell(d, i // 8, i % 8)
        assert _close(decoded, _cell(r, 2 * (i // 8) + 1, i % 8)), f"image {i}"
        cells.append(decoded)
    assert len({c.tobytes() for c in cells}) > 8  # the codes matter: not one image 16 times
    for other in ("z.csv", "z.safetensors"):  # every format decodes to the same picture
        _ok(vae("decode", ckpt2d, other, "-n", "16", "--nrow", "8", "-o", "o.png"))
        assert np.array_equal(_picture("o.png"), d), other


def test_decode_lays_out_exactly_the_codes_given(vae, tiny_ckpt):
    codes = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    np.save("five.npy", codes)
    _ok(vae("decode", tiny_ckpt, "five.npy", "-o", "d.png"))
    assert Image.open("d.png").size == _grid_size(5, 3)  # default: a square-ish grid, 3 per row
    picture = _picture("d.png")
    images = vaecli.load(tiny_ckpt).decode(torch.from_numpy(codes))
    for i in range(5):
        assert _close(_cell(picture, i // 3, i % 3), _up(images[i]))
    assert (_cell(picture, 1, 2) == 128).all()  # the sixth cell is empty (padding grey)
    _ok(vae("decode", tiny_ckpt, "five.npy", "-n", "2", "--nrow", "2", "-o", "two.png"))
    assert Image.open("two.png").size == _grid_size(2, 2)


def test_decode_of_z_values(vae, tiny_ckpt):
    result = _ok(vae("decode", tiny_ckpt, "--z", "0.5,-1,2", "--z", "0, 0, 0", "-o", "d.png"))
    assert "Wrote 2 decoded images" in result.stdout
    assert Image.open("d.png").size == _grid_size(2, 2)
    images = vaecli.load(tiny_ckpt).decode(torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0]]))
    picture = _picture("d.png")
    assert _close(_cell(picture, 0, 0), _up(images[0])) and _close(_cell(picture, 0, 1), _up(images[1]))


def test_decode_of_many_codes_decodes_the_first_256_with_a_warning(vae, tiny_ckpt):
    np.save("many.npy", np.zeros((300, 3), dtype=np.float32))
    result = _ok(vae("decode", tiny_ckpt, "many.npy", "-o", "d.png"))
    assert "holds 300 codes; decoding the first 256" in result.stderr
    assert Image.open("d.png").size == _grid_size(256, 16)


# -- interpolate ------------------------------------------------------------------------------


def test_interpolate_png_has_one_row_per_pair_from_a_to_b(vae, ckpt2d):
    _ok(vae("interpolate", ckpt2d, "shapes:test", "shapes:train", "--pairs", "3", "--steps", "5", "-o", "i.png"))
    assert Image.open("i.png").size == _grid_size(15, 5)  # 3 rows x 5 columns
    picture = _picture("i.png")
    model = vaecli.load(ckpt2d)
    a, _ = model.encode(_test_split(WIDE_DATA).images[:3])
    b, _ = model.encode(_train_split(WIDE_DATA).images[:3])
    a64, b64 = a.double(), b.double()
    omega = torch.arccos(torch.nn.functional.cosine_similarity(a64, b64, dim=-1)).unsqueeze(1)
    middle = (a64 + b64) / (2 * torch.cos(omega / 2))  # slerp at t = 1/2
    for k in range(3):
        assert _close(_cell(picture, k, 0), _up(model.decode(a[k : k + 1])[0]))
        assert _close(_cell(picture, k, 4), _up(model.decode(b[k : k + 1])[0]))
        assert _close(_cell(picture, k, 2), _up(model.decode(middle[k : k + 1])[0]))
    _ok(
        vae(
            "interpolate",
            ckpt2d,
            "shapes:test",
            "shapes:train",
            "--pairs",
            "3",
            "--steps",
            "5",
            "--method",
            "lerp",
            "-o",
            "l.png",
        )
    )
    lerp = _picture("l.png")
    for k in range(3):
        assert _close(_cell(lerp, k, 2), _up(model.decode((a[k : k + 1] + b[k : k + 1]) / 2)[0]))


def test_interpolate_between_prior_draws_is_seeded(vae, ckpt2d):
    _ok(vae("interpolate", ckpt2d, "--pairs", "2", "--steps", "4", "-o", "a.png"))
    _ok(vae("interpolate", ckpt2d, "--pairs", "2", "--steps", "4", "-o", "b.png"))
    _ok(vae("interpolate", ckpt2d, "--pairs", "2", "--steps", "4", "--seed", "1", "-o", "c.png"))
    assert Image.open("a.png").size == _grid_size(8, 4)
    assert np.array_equal(_picture("a.png"), _picture("b.png"))
    assert not np.array_equal(_picture("a.png"), _picture("c.png"))


def _frames(path) -> list:
    with Image.open(path) as gif:
        frames = []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("RGB")).copy())
        return frames


def test_interpolate_gif_goes_there_and_back(vae, ckpt2d):
    steps, pairs = 6, 2
    result = _ok(
        vae(
            "interpolate",
            ckpt2d,
            "shapes:test",
            "shapes:train",
            "--pairs",
            pairs,
            "--steps",
            steps,
            "--frame-ms",
            "50",
            "-o",
            "x.gif",
        )
    )
    with Image.open("x.gif") as gif:
        assert gif.n_frames == 2 * steps - 2
        assert gif.size == _grid_size(pairs, pairs)  # each frame: one step of every path, side by side
        assert gif.info["loop"] == 0
    assert f"Wrote a {2 * steps - 2}-frame animation" in result.stdout
    frames = _frames("x.gif")
    for k in range(1, steps - 1):  # frame k and frame 2S-2-k show the same step
        assert np.array_equal(frames[k], frames[2 * steps - 2 - k])
    assert not np.array_equal(frames[0], frames[steps - 1])


def test_interpolate_gif_reports_the_frames_it_wrote(vae, tiny_ckpt):
    result = _ok(vae("interpolate", tiny_ckpt, "shapes:test:0", "shapes:test:0", "--steps", "5", "-o", "x.gif"))
    with Image.open("x.gif") as gif:
        assert f"Wrote a {gif.n_frames}-frame animation" in result.stdout


# -- plot-latent ------------------------------------------------------------------------------


@pytest.fixture
def spy(monkeypatch):
    """Records the arguments of viz.scatter and viz.image_table (and still draws the picture)."""
    from vaecli import viz

    calls = {}

    def wrap(name):
        real = getattr(viz, name)

        def spied(*args, **kwargs):
            calls[name] = (args, kwargs)
            return real(*args, **kwargs)

        monkeypatch.setattr(viz, name, spied)

    wrap("scatter")
    wrap("image_table")
    return calls


def _printed_size(result, name):
    line = result.stdout.strip()
    assert line.startswith(f"Wrote {name} (")
    w, h = line.split("(")[1].split(" px")[0].split("x")
    assert Image.open(name).size == (int(w), int(h))
    assert 300 <= int(w) <= 3000 and 300 <= int(h) <= 3000
    return int(w), int(h)


def test_plot_latent_scatter_of_a_3d_model_is_its_pca_coloured_by_label(vae, tiny_ckpt, spy):
    from vaecli.latents import pca

    result = _ok(vae("plot-latent", tiny_ckpt, "-o", "p.png"))
    _printed_size(result, "p.png")
    (points, _path), kwargs = spy["scatter"]
    test = _test_split()
    mean, _ = vaecli.load(tiny_ckpt).encode(test.images)
    expected, share = pca(mean)
    torch.testing.assert_close(points, expected, rtol=0, atol=1e-5)
    assert torch.equal(kwargs["labels"], test.labels)
    assert kwargs["class_names"] == SHAPES and kwargs["values"] is None
    assert kwargs["xlabel"].startswith("PC1 (") and kwargs["ylabel"].startswith("PC2 (")


def test_plot_latent_colours_by_a_shapes_factor(vae, tiny_ckpt, spy):
    result = _ok(
        vae("plot-latent", tiny_ckpt, "--color-by", "scale", "--method", "dims", "--dims", "2,0", "-o", "p.png")
    )
    _printed_size(result, "p.png")
    (points, _path), kwargs = spy["scatter"]
    test = _test_split()
    mean, _ = vaecli.load(tiny_ckpt).encode(test.images)
    torch.testing.assert_close(points, mean[:, [2, 0]], rtol=0, atol=1e-6)
    torch.testing.assert_close(kwargs["values"], test.factors["scale"].float())
    assert kwargs["labels"] is None and kwargs["value_name"] == "scale"
    assert (kwargs["xlabel"], kwargs["ylabel"]) == ("z2", "z0")


def test_plot_latent_scatter_of_a_2d_model_plots_the_means(vae, ckpt2d, spy):
    result = _ok(vae("plot-latent", ckpt2d, "--max-points", "100", "-o", "p.svg"))
    assert Path("p.svg").read_text().lstrip().startswith("<?xml")
    (points, _path), kwargs = spy["scatter"]
    mean, _ = vaecli.load(ckpt2d).encode(_test_split(WIDE_DATA).images[:100])
    torch.testing.assert_close(points, mean, rtol=0, atol=1e-6)
    assert (kwargs["xlabel"], kwargs["ylabel"]) == ("z0", "z1")
    assert "Wrote p.svg" in result.stdout


def test_plot_latent_manifold_of_a_2d_model_needs_no_data(vae, ckpt2d, spy, monkeypatch):
    from vaecli import data
    from vaecli import inputs as inputs_module
    from vaecli.latents import normal_grid

    def no_data(*args, **kwargs):
        raise AssertionError("the manifold of a 2-D model needs no dataset")

    monkeypatch.setattr(inputs_module, "load_input", no_data)
    monkeypatch.setattr(data, "load_dataset", no_data)
    result = _ok(vae("plot-latent", ckpt2d, "--manifold", "--grid", "5", "-o", "m.png"))
    _printed_size(result, "m.png")
    (images, rows, _path), kwargs = spy["image_table"]
    assert rows == 5 and images.shape == (25, 1, 8, 8)
    g = normal_grid(5)
    z = torch.tensor([[g[col], g[4 - row]] for row in range(5) for col in range(5)])  # z1 largest at the top
    torch.testing.assert_close(images, vaecli.load(ckpt2d).decode(z), rtol=0, atol=1e-5)
    assert kwargs["col_labels"] == [f"{v:.2f}" for v in g.tolist()]
    assert kwargs["row_labels"] == [f"{v:.2f}" for v in reversed(g.tolist())]


def test_plot_latent_traverse_sweeps_each_dimension_in_order_of_kl(vae, tiny_ckpt, spy):
    result = _ok(vae("plot-latent", tiny_ckpt, "--traverse", "-o", "t.png"))
    w, h = _printed_size(result, "t.png")
    assert w > h  # 3 rows of 11 columns
    (images, rows, _path), kwargs = spy["image_table"]
    assert rows == 3 and images.shape == (33, 1, 8, 8)
    model = vaecli.load(tiny_ckpt)
    mean, logvar = model.encode(_test_split().images)
    kl = (0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar)).mean(0)
    order = kl.double().argsort(descending=True).tolist()
    sweep = torch.linspace(-3, 3, 11)
    z = mean[0].repeat(3, 11, 1)
    for row, d in enumerate(order):
        z[row, :, d] = sweep
    torch.testing.assert_close(images, model.decode(z.view(-1, 3)), rtol=0, atol=1e-5)
    assert [label.split()[0] for label in kwargs["row_labels"]] == [f"z{d}" for d in order]


def test_plot_latent_of_a_single_image(vae, tiny_ckpt):
    _ok(vae("plot-latent", tiny_ckpt, "shapes:test:0", "-o", "p.png"))


# -- evaluate ---------------------------------------------------------------------------------

EVAL_KEYS = {
    "kind",
    "examples",
    "pixels",
    "recon",
    "nelbo",
    "kl",
    "nll",
    "iw_samples",
    "bits_per_dim",
    "active_units",
    "latent_dim",
    "kl_per_dim",
    "activity_per_dim",
    "input",
    "checkpoint",
    "seconds",
}


def _evaluate(vae, ckpt, *args) -> dict:
    return json.loads(_ok(vae("evaluate", ckpt, "--json", *args)).stdout)


def test_evaluate_json_numbers_are_consistent(vae, ckpt2d):
    r = _evaluate(vae, ckpt2d)
    assert set(r) == EVAL_KEYS
    assert (r["kind"], r["examples"], r["pixels"], r["iw_samples"], r["latent_dim"]) == ("vae", 256, 64, 100, 2)
    assert (r["input"], r["checkpoint"]) == ("shapes:test", str(ckpt2d))
    assert r["nelbo"] == pytest.approx(r["recon"] + r["kl"], rel=1e-12)
    assert r["nll"] <= r["nelbo"]  # the importance-weighted bound is tighter than the ELBO
    assert r["bits_per_dim"] == pytest.approx(r["nll"] / (64 * math.log(2)), rel=1e-12)
    model = vaecli.load(ckpt2d)
    mean, logvar = model.encode(_test_split(WIDE_DATA).images)
    mean, logvar = mean.double(), logvar.double()
    kl = (0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar)).mean(0)
    assert r["kl_per_dim"] == pytest.approx(kl.tolist(), abs=1e-5)
    assert sum(r["kl_per_dim"]) == pytest.approx(r["kl"], abs=1e-9)
    activity = mean.var(0, unbiased=False)
    assert r["activity_per_dim"] == pytest.approx(activity.tolist(), abs=1e-5)
    assert 0 <= r["active_units"] <= 2
    assert r["active_units"] == int((activity > 0.01).sum())
    assert r["active_units"] >= 1  # this model uses its latents


def test_more_importance_samples_tighten_the_bound(vae, ckpt2d):
    k10, k1000 = _evaluate(vae, ckpt2d, "-k", "10"), _evaluate(vae, ckpt2d, "-k", "1000")
    assert k1000["nll"] <= k10["nll"] <= k10["nelbo"]
    assert k1000["nll"] <= k1000["nelbo"]
    assert k1000["kl"] == pytest.approx(k10["kl"])  # the closed-form KL does not depend on k


def test_evaluate_with_one_sample_is_the_test_pass_of_training(vae, ckpt2d):
    """Same noise, same batches: -k 1 reproduces the last epoch's test -ELBO and its parts."""
    numbers = _evaluate(vae, ckpt2d, "-k", "1")
    last = checkpoint.read(ckpt2d).meta["metrics"][-1]
    for key, mine in (("nelbo", "test_nelbo"), ("recon", "test_recon"), ("kl", "test_kl")):
        assert numbers[key] == pytest.approx(last[mine], abs=1e-9)


def test_evaluate_is_seeded_and_takes_an_input(vae, ckpt2d):
    a = _evaluate(vae, ckpt2d, "shapes:test:3", "-k", "5")
    b = _evaluate(vae, ckpt2d, "shapes:test:3", "-k", "5", "-b", "1")
    c = _evaluate(vae, ckpt2d, "shapes:test:3", "-k", "5", "--seed", "1")
    assert a["examples"] == 1 and a["input"] == "shapes:test:3"
    assert a["nll"] == pytest.approx(b["nll"], abs=1e-9)
    assert a["nll"] != c["nll"]


def test_evaluate_table_shows_the_json_numbers(vae, ckpt2d):
    r = _evaluate(vae, ckpt2d, "-k", "20")
    text = _ok(vae("evaluate", ckpt2d, "-k", "20")).stdout
    for label, value in (
        ("-ELBO", f"{r['nelbo']:.2f}"),
        ("NLL (IWAE)", f"{r['nll']:.2f}"),
        ("bits/dim", f"{r['bits_per_dim']:.4f}"),
        ("active units", f"{r['active_units']} / 2"),
    ):
        line = next(line for line in text.splitlines() if line.strip().startswith(label))
        assert value in line, line


def test_evaluate_of_a_plain_autoencoder_reports_only_reconstruction(vae, ae_ckpt):
    r = _evaluate(vae, ae_ckpt)
    assert set(r) == {
        "kind",
        "examples",
        "pixels",
        "recon",
        "active_units",
        "latent_dim",
        "input",
        "checkpoint",
        "seconds",
    }
    model = vaecli.load(ae_ckpt)
    x = model.prepare(_test_split().images)
    with torch.no_grad():
        mean, _ = model.posterior(x)
        recon = -model.likelihood.log_prob(x, model.likelihood_params(mean)).double().mean()
    assert r["kind"] == "ae" and r["recon"] == pytest.approx(recon.item(), abs=1e-4)
    text = _ok(vae("evaluate", ae_ckpt)).stdout
    assert "recon" in text and f"{r['recon']:.2f}" in text
    assert "no likelihood of x" in text and "KL" not in text


# -- inputs: image files and folders ----------------------------------------------------------


def test_an_rgb_png_is_converted_to_grey_by_luma(vae, tiny_ckpt):
    rgb = np.random.default_rng(1).integers(0, 256, size=(8, 8, 3))
    _png("rgb.png", rgb, "RGB")
    result = _ok(vae("reconstruct", tiny_ckpt, "rgb.png", "-o", "r.png"))
    assert not result.stderr.strip()
    luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    assert (
        np.abs(_cell(_picture("r.png"), 0, 0) - _up(torch.tensor(luma).unsqueeze(0).round().to(torch.uint8))).max() <= 1
    )


def test_a_larger_png_of_the_same_aspect_is_resized_with_a_warning(vae, tiny_ckpt):
    _png("big.png", np.full((16, 16), 77))
    result = _ok(vae("encode", tiny_ckpt, "big.png", "-o", "z.npy"))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "warning" in lines[0] and "resized 1 image(s) from 16x16 to 8x8" in lines[0]
    mean, _ = vaecli.load(tiny_ckpt).encode(torch.full((1, 1, 8, 8), 77, dtype=torch.uint8))
    np.testing.assert_allclose(np.load("z.npy"), mean.numpy(), rtol=0, atol=1e-6)


def test_a_png_of_another_aspect_is_refused(vae, tiny_ckpt):
    _png("wide.png", np.zeros((8, 12)))
    one_line_error(vae("encode", tiny_ckpt, "wide.png", "-o", "z.npy"), 2, "expects 8x8 grey images", "8x12", "aspect")
    assert not Path("z.npy").exists()


def test_a_folder_skips_what_is_not_an_image(vae, tiny_ckpt, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    test = _test_split().images
    _png(folder / "a.png", test[0, 0])
    _png(folder / "b.png", test[1, 0])
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes((folder / "a.png").read_bytes()[:40])  # a truncated PNG
    result = _ok(vae("encode", tiny_ckpt, folder, "-o", "z.npy"))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "skipped 2 file(s)" in lines[0]
    assert "broken.png" in lines[0] and "notes.txt" in lines[0]
    mean, _ = vaecli.load(tiny_ckpt).encode(test[:2])
    np.testing.assert_allclose(np.load("z.npy"), mean.numpy(), rtol=0, atol=1e-6)


def test_an_empty_folder_is_aone_line_error(vae, tiny_ckpt, tmp_path):
    (tmp_path / "empty").mkdir()
    one_line_error(vae("encode", tiny_ckpt, "empty", "-o", "z.npy"), 2, "no readable images")
    assert not Path("z.npy").exists()


def test_subfolders_of_a_folder_are_labels(vae, tiny_ckpt, tmp_path):
    from safetensors import safe_open

    test = _test_split().images
    for i, name in enumerate(["ring/x.png", "blob/y.png", "ring/z.png"]):
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        _png(tmp_path / "data" / name, test[i, 0])
    _ok(vae("encode", tiny_ckpt, "data", "-o", "z.safetensors"))
    with safe_open("z.safetensors", "pt") as f:
        labels, meta = f.get_tensor("labels"), f.metadata()
    # sorted paths: blob/y.png, ring/x.png, ring/z.png; classes sorted: blob, ring
    assert labels.tolist() == [0, 1, 1]
    assert json.loads(meta["class_names"]) == ["blob", "ring"]


# -- bad input: one line on stderr, exit 2, nothing written -----------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["encode", "{missing}", "shapes:test"],
        ["decode", "{missing}", "--z", "0,0,0"],
        ["reconstruct", "{missing}"],
        ["interpolate", "{missing}"],
        ["plot-latent", "{missing}"],
        ["evaluate", "{missing}"],
    ],
)
def test_a_missing_checkpoint(vae, args):
    one_line_error(vae(*[a.format(missing="gone.safetensors") for a in args]), 2, "gone.safetensors", "no such file")
    assert not _files()


@pytest.mark.parametrize(
    "args",
    [
        ["encode", "{ckpt}", "nosuch:test", "-o", "z.npy"],
        ["reconstruct", "{ckpt}", "nosuch:test"],
        ["interpolate", "{ckpt}", "nosuch:test", "shapes:test"],
        ["interpolate", "{ckpt}", "shapes:test", "nosuch:train:0"],
        ["plot-latent", "{ckpt}", "nosuch:test", "-o", "p.png"],
        ["evaluate", "{ckpt}", "nosuch:test"],
    ],
)
def test_an_unknown_dataset_in_input(vae, tiny_ckpt, args):
    one_line_error(vae(*[a.format(ckpt=tiny_ckpt) for a in args]), 2, "unknown dataset 'nosuch'", "shapes")
    assert not _files()


@pytest.mark.parametrize("command", ["reconstruct", "encode", "evaluate"])
def test_an_index_out_of_range(vae, tiny_ckpt, command):
    one_line_error(vae(command, tiny_ckpt, "shapes:test:48"), 2, "index 48 is out of range", "48 images")
    assert not _files()


@pytest.mark.parametrize("command", ["reconstruct", "decode"])
@pytest.mark.parametrize(
    "value,needle", [("0", "-n must be at least 1"), ("-3", "-n must be at least 1"), ("abc", "'-n'")]
)
def test_bad_n(vae, tiny_ckpt, command, value, needle):
    extra = ["--z", "0,0,0"] if command == "decode" else []
    one_line_error(vae(command, tiny_ckpt, *extra, "-n", value), 2, needle)
    assert not _files()


@pytest.mark.parametrize(
    "args,needles",
    [
        (["interpolate", "--steps", "1"], ["--steps must be at least 2"]),
        (["interpolate", "--method", "foo"], ["--method must be slerp or lerp", "'foo'"]),
        (["interpolate", "shapes:test:0"], ["give both A and B"]),
        (["interpolate", "--pairs", "0"], ["--pairs must be at least 1"]),
        (["interpolate", "-o", "x.txt"], ["must end in one of", ".gif"]),
        (["reconstruct", "--mode", "median"], ["--mode must be"]),
        (["plot-latent", "--method", "foo"], ["--method must be pca or dims"]),
        (["plot-latent", "--manifold", "--traverse"], ["--manifold, --traverse and --factors", "choose one"]),
        (["plot-latent", "--dims", "0,3"], ["--dims 0,3", "dimension 3 does not exist", "0 to 2"]),
        (["plot-latent", "--dims", "1"], ["give two latent dimensions"]),
        (["plot-latent", "--color-by", "hue"], ["--color-by hue", "label", "scale", "orientation"]),
        (["evaluate", "-k", "0"], ["--iw-samples must be at least 1"]),
    ],
)
def test_bad_options(vae, tiny_ckpt, args, needles):
    one_line_error(vae(args[0], tiny_ckpt, *args[1:]), 2, *needles)
    assert not _files()


@pytest.mark.parametrize(
    "args",
    [
        ["encode", "{ckpt}", "shapes:test", "-o", "nope/z.npy"],
        ["decode", "{ckpt}", "--z", "0,0,0", "-o", "nope/d.png"],
        ["reconstruct", "{ckpt}", "-o", "nope/r.png"],
        ["interpolate", "{ckpt}", "-o", "nope/i.gif"],
        ["plot-latent", "{ckpt}", "-o", "nope/p.png"],
    ],
)
def test_an_output_folder_that_does_not_exist(vae, tiny_ckpt, args):
    one_line_error(vae(*[a.format(ckpt=tiny_ckpt) for a in args]), 2, "the folder nope does not exist")
    assert not _files()


def test_decode_needs_latents_or_z_but_not_both(vae, tiny_ckpt):
    np.save("z.npy", np.zeros((2, 3), dtype=np.float32))
    one_line_error(vae("decode", tiny_ckpt, "z.npy", "--z", "0,0,0"), 2, "not both")
    one_line_error(vae("decode", tiny_ckpt), 2, "give a LATENTS file")
    assert set(_files()) == {"z.npy"}


@pytest.mark.parametrize(
    "make,needles",
    [
        (lambda: np.save("bad.npy", np.zeros((4, 2), dtype=np.float32)), ["2 dimensions", "has 3"]),
        (lambda: np.save("bad.npy", np.array([[0.0, 1.0, 2.0], [0.0, np.nan, 1.0]])), ["NaN", "row 1"]),
        (lambda: np.save("bad.npy", np.array([[0.0, np.inf, 2.0]])), ["infinite"]),
        (lambda: Path("bad.npy").write_bytes(b"\x93NUMPY garbage"), ["not a readable .npy"]),
        (lambda: Path("bad.npy").write_bytes(b""), ["is empty"]),
    ],
)
def test_decode_refuses_bad_latents(vae, tiny_ckpt, make, needles):
    make()
    one_line_error(vae("decode", tiny_ckpt, "bad.npy", "-o", "d.png"), 2, "bad.npy", *needles)
    assert set(_files()) == {"bad.npy"}


class _OpensAFile:
    """Unpickling this creates ``marker``: proof that a file was unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_decode_never_unpickles_an_object_array(vae, tiny_ckpt, tmp_path):
    marker = tmp_path / "unpickled"
    np.save("evil.npy", np.array([[_OpensAFile(str(marker))] * 3], dtype=object), allow_pickle=True)
    np.load("evil.npy", allow_pickle=True)  # the file is what it claims: unpickling it runs code
    assert marker.exists()
    marker.unlink()
    one_line_error(vae("decode", tiny_ckpt, "evil.npy", "-o", "d.png"), 2, "evil.npy", "pickle", "refused")
    assert not marker.exists()
    assert not Path("d.png").exists()


def test_decode_of_a_checkpoint_given_as_latents(vae, tiny_ckpt):
    one_line_error(vae("decode", tiny_ckpt, tiny_ckpt, "-o", "d.png"), 2, "is a model checkpoint, not latents")
    assert not _files()


def test_encode_does_not_overwrite_without_force(vae, tiny_ckpt):
    Path("z.npy").write_bytes(b"precious")
    one_line_error(vae("encode", tiny_ckpt, "shapes:test", "-o", "z.npy"), 2, "z.npy already exists", "--force")
    assert Path("z.npy").read_bytes() == b"precious"
    _ok(vae("encode", tiny_ckpt, "shapes:test", "-o", "z.npy", "--force"))
    assert np.load("z.npy").shape == (48, 3)


@pytest.mark.parametrize("target", ["copy.safetensors", "./copy.safetensors"])
def test_encode_never_overwrites_the_checkpoint(vae, tiny_ckpt, target):
    shutil.copy(tiny_ckpt, "copy.safetensors")
    before = Path("copy.safetensors").read_bytes()
    one_line_error(
        vae("encode", "copy.safetensors", "shapes:test", "-o", target, "--force"), 2, "is the checkpoint itself"
    )
    assert Path("copy.safetensors").read_bytes() == before
    assert set(_files()) == {"copy.safetensors"}


def test_a_checkpoint_whose_header_length_ends_in_0x80_is_readable(vae, tiny_ckpt):
    from safetensors.torch import load

    data = Path(tiny_ckpt).read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = data[8 : 8 + n].decode().rstrip()
    header += " " * ((0x80 - len(header)) % 256)  # JSON whitespace: the same header, 0x80 mod 256 long
    Path("m.safetensors").write_bytes(len(header).to_bytes(8, "little") + header.encode() + data[8 + n :])
    assert len(load(Path("m.safetensors").read_bytes())) == len(load(data))  # a valid safetensors file
    _ok(vae("info", "m.safetensors"))


# -- train --viz-dir, metrics.jsonl, --tensorboard -------------------------------------------


def test_train_viz_dir_writes_pictures_of_every_epoch_and_the_animation(vae):
    result = _ok(vae("train", *TINY_CLI, "--epochs", "3", "-o", "m.safetensors", "--viz-dir", "viz"))
    assert "viz/training.gif" in result.stdout
    names = sorted(p.name for p in Path("viz").iterdir())
    assert names == sorted(
        [f"{kind}-{e:03d}.png" for kind in ("recon", "samples", "latent") for e in (1, 2, 3)] + ["training.gif"]
    )
    with Image.open("viz/training.gif") as gif:
        assert gif.n_frames == 3
    # 32 fixed test inputs, each row of 8 over its reconstructions: 8 rows of 8
    assert Image.open("viz/recon-001.png").size == _grid_size(64, 8)
    assert Image.open("viz/samples-002.png").size == _grid_size(64, 8)  # 64 prior draws
    recon = _picture("viz/recon-003.png")
    test = _test_split().images
    for i in (0, 7, 8, 31):
        assert np.array_equal(_cell(recon, 2 * (i // 8), i % 8), _up(test[i]))
    assert Image.open("viz/latent-001.png").size[0] >= 300
    # metrics.jsonl beside the checkpoint: one line per epoch, the checkpoint's own numbers
    records = [json.loads(line) for line in Path("m.metrics.jsonl").read_text().splitlines()]
    saved = checkpoint.read("m.safetensors").meta["metrics"]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert [r["test_nelbo"] for r in records] == [m["test_nelbo"] for m in saved]
    assert records == saved

    # a second run may not mix its pictures with these
    before = _files(Path("viz"))
    one_line_error(
        vae("train", *TINY_CLI, "--epochs", "1", "-o", "n.safetensors", "--viz-dir", "viz"),
        2,
        "--viz-dir viz already holds pictures",
        "--force",
    )
    assert _files(Path("viz")) == before
    assert not Path("n.safetensors").exists() and not Path("n.metrics.jsonl").exists()


def test_train_writes_metrics_jsonl_without_viz_dir(vae):
    _ok(vae("train", *TINY_CLI, "--epochs", "2", "-o", "m.safetensors"))
    records = [json.loads(line) for line in Path("m.metrics.jsonl").read_text().splitlines()]
    assert records == checkpoint.read("m.safetensors").meta["metrics"]
    assert len(records) == 2


@pytest.mark.parametrize(
    "setup,viz,needles",
    [
        (lambda: Path("afile").write_text("x"), "afile", ["--viz-dir afile is a file"]),
        (lambda: None, "nope/viz", ["the folder nope does not exist"]),
    ],
)
def test_train_bad_viz_dir(vae, setup, viz, needles):
    setup()
    before = _files()
    one_line_error(vae("train", *TINY_CLI, "--epochs", "1", "-o", "m.safetensors", "--viz-dir", viz), 2, *needles)
    assert _files() == before


def test_tensorboard_missing_is_a_one_line_error_before_training(vae, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    # one line and nothing else: no "Training a VAE ..." header, no epoch line, no file
    one_line_error(
        vae("train", *TINY_CLI, "--epochs", "1", "-o", "m.safetensors", "--tensorboard", "tb"),
        2,
        "--tensorboard needs the tensorboard package",
        "pip install",
    )
    assert not _files() and not Path("tb").exists()


@pytest.fixture(scope="module")
def tensorboard_run(tmp_path_factory, one_thread):
    pytest.importorskip("tensorboard")
    folder = tmp_path_factory.mktemp("tb")
    result = vaecli.train(**tiny_run(epochs=2, out=str(folder / "m.safetensors"), tensorboard=str(folder / "tb")))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "tb"))
    events.Reload()
    return folder, result, events


def test_tensorboard_logs_the_metrics_and_pictures(tensorboard_run):
    folder, result, events = tensorboard_run
    assert list((folder / "tb").glob("events.out.tfevents.*"))
    tags = events.Tags()
    assert {"reconstructions", "samples"} <= set(tags["images"])
    logged = [(e.step, e.value) for e in events.Scalars("test/loss")]
    assert [s for s, _ in logged] == [1, 2]
    assert [v for _, v in logged] == pytest.approx([m["test_nelbo"] for m in result.metrics], rel=1e-6)


def test_tensorboard_scalar_tags_have_names(tensorboard_run):
    _, _, events = tensorboard_run
    assert all(not tag.endswith("/") for tag in events.Tags()["scalars"])


# -- review fixes: nothing overwritten or lost, no traceback, bounded work -------------------


def test_a_picture_never_overwrites_its_input_image(vae, tiny_ckpt):
    _png("keep.png", np.full((8, 8), 200))
    before = Path("keep.png").read_bytes()
    one_line_error(vae("reconstruct", tiny_ckpt, "keep.png", "-o", "keep.png"), 2, "also the input image")
    one_line_error(vae("interpolate", tiny_ckpt, "keep.png", "shapes:test:1", "-o", "keep.png"), 2, "input image")
    assert Path("keep.png").read_bytes() == before


def test_a_picture_too_large_to_write_is_refused_and_the_old_file_kept(vae, tiny_ckpt):
    Path("prev.png").write_bytes(b"precious")
    one_line_error(
        vae("interpolate", tiny_ckpt, "--steps", "1000", "--pairs", "100", "-o", "prev.png"),
        2,
        "1000",
        "100",
        "at most",
    )
    np.save("z.npy", np.zeros((300, 3), dtype=np.float32))  # 300 rows of 80 px: taller than any format allows
    one_line_error(vae("decode", tiny_ckpt, "z.npy", "-n", "300", "--nrow", "1", "-o", "prev.png"), 2, "too large")
    assert Path("prev.png").read_bytes() == b"precious"
    _ok(vae("reconstruct", tiny_ckpt, "shapes:test", "-n", "48", "--nrow", "48", "-o", "prev.png"))
    assert Path("prev.png").read_bytes() != b"precious"  # a picture that fits is written


def test_a_failed_picture_write_leaves_the_old_file(vae, tiny_ckpt, monkeypatch):
    from vaecli import checkpoint as ck

    Path("grid.png").write_bytes(b"precious")

    def full_disk(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck, "atomic_write", full_disk)
    one_line_error(vae("sample", tiny_ckpt, "-n", "4", "-o", "grid.png"), 1, "could not write", "No space")
    assert Path("grid.png").read_bytes() == b"precious"


def test_an_image_too_large_to_read_is_refused(vae, tiny_ckpt, monkeypatch):
    from PIL import Image as PILImage

    _png("big.png", np.zeros((8, 8)))
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 20)  # 64 pixels is then a "decompression bomb"
    one_line_error(vae("encode", tiny_ckpt, "big.png", "-o", "z.npy"), 2, "big.png", "too large")


def test_the_first_frame_of_an_animated_gif_is_used_with_a_warning(vae, tiny_ckpt):
    frames = [Image.fromarray(np.full((8, 8), v, dtype=np.uint8)) for v in (0, 128, 255)]
    frames[0].save("anim.gif", save_all=True, append_images=frames[1:])
    result = _ok(vae("encode", tiny_ckpt, "anim.gif", "-o", "z.npy"))
    assert "first of its 3 frames" in result.stderr
    assert np.load("z.npy").shape == (1, 3)


def test_an_empty_input_is_refused(vae, tiny_ckpt):
    one_line_error(vae("encode", tiny_ckpt, "", "-o", "z.npy"), 2, "INPUT is empty")


def test_a_csv_with_a_huge_field_is_refused(vae, tiny_ckpt):
    Path("z.csv").write_text("z0,z1,z2\n" + "1" * 200_000 + ",0,0\n")
    one_line_error(vae("decode", tiny_ckpt, "z.csv", "-o", "d.png"), 2, "z.csv")


def test_tensorboard_pointing_at_a_file_is_refused_before_training(vae):
    Path("tbfile").write_text("x")
    one_line_error(
        vae("train", *TINY_CLI, "--epochs", "1", "-o", "m.safetensors", "--tensorboard", "tbfile"),
        2,
        "--tensorboard tbfile is a file",
    )
    assert not Path("m.safetensors").exists() and not Path("m.metrics.jsonl").exists()


@pytest.mark.parametrize("kind", ["recon", "samples", "latent"])
def test_viz_dir_with_any_picture_of_a_run_is_refused(vae, kind):
    Path("viz").mkdir()
    Path(f"viz/{kind}-001.png").write_bytes(b"mine")
    one_line_error(vae("train", *TINY_CLI, "--epochs", "1", "-o", "m.safetensors", "--viz-dir", "viz"), 2, "--force")
    assert Path(f"viz/{kind}-001.png").read_bytes() == b"mine"


def test_a_failing_picture_is_a_warning_and_training_goes_on(vae, monkeypatch):
    from vaecli import viz

    def broken(*args, **kwargs):
        raise VaeError("could not write latent-001.png: disk full")

    monkeypatch.setattr(viz, "scatter", broken)
    result = _ok(vae("train", *TINY_CLI, "--epochs", "2", "-o", "m.safetensors", "--viz-dir", "viz"))
    assert "warning" in result.stderr and "disk full" in result.stderr
    assert checkpoint.read("m.safetensors").epoch == 2
    assert len(Path("m.metrics.jsonl").read_text().splitlines()) == 2


def test_a_long_run_keeps_a_bounded_number_of_animation_frames(vae, monkeypatch):
    from vaecli.training import monitor

    monkeypatch.setattr(monitor, "MAX_FRAMES", 4)
    _ok(vae("train", *TINY_CLI, "--epochs", "7", "-o", "m.safetensors", "--viz-dir", "viz"))
    # epochs 1-4 kept, halved to 1, 3; then 5 and 7 -> halved to 1, 5; the last epoch, 7, always ends it
    assert len(_frames("viz/training.gif")) == 3


def test_metrics_of_an_earlier_run_survive_a_run_that_saves_nothing(vae, monkeypatch):
    _ok(vae("train", *TINY_CLI, "--epochs", "1", "-o", "m.safetensors"))
    before = Path("m.metrics.jsonl").read_text()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.Trainer, "_epoch", interrupted)
    assert vae("train", *TINY_CLI, "--epochs", "1", "-o", "m.safetensors", "--force").exit_code == 130
    assert Path("m.metrics.jsonl").read_text() == before


def test_a_plain_autoencoder_has_no_prior_to_interpolate_or_grid(vae, ae_ckpt):
    one_line_error(vae("interpolate", ae_ckpt, "-o", "i.png"), 2, "no prior", "give A and B")
    one_line_error(vae("plot-latent", ae_ckpt, "--manifold", "-o", "m.png"), 2, "--range")
    _ok(vae("plot-latent", ae_ckpt, "--manifold", "--range", "2", "-o", "m.png"))
    result = _ok(vae("plot-latent", ae_ckpt, "--traverse", "-o", "t.png"))
    assert Path("t.png").exists() and "Traceback" not in result.output
