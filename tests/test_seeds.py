"""Every seed a user can type: any whole number is reduced modulo 2**64 (``vaecli.options.seed64``)
and draws; the same number always draws the same, and n and n + 2**64 draw alike. Hypothesis
drives each command's ``--seed`` (and the explorer's API) with integers of any size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from conftest import TINY_CLI
from vaecli.options import seed64

pytestmark = pytest.mark.usefixtures("one_thread")

ANY_SIZE = st.one_of(st.integers(), st.integers(-(2**200), 2**200))
FEW = settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
# the seeds of the tracebacks, and the edges of the range torch takes
TYPED = [1180591620717411303424, 99999999999999999999, 2**64, 2**64 - 1, -1, -(2**63) - 1, -(10**40)]


def test_seed64_is_the_residue_modulo_2_to_the_64():
    assert [seed64(s) for s in (0, 5, 2**64 - 1, 2**64, 2**64 + 5, -1, -(2**64))] == [
        0,
        5,
        2**64 - 1,
        0,
        5,
        2**64 - 1,
        0,
    ]
    assert seed64(99999999999999999999) == 99999999999999999999 - 5 * 2**64


def _succeeds(result) -> None:
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output


@FEW
@given(seed=ANY_SIZE)
@example(seed=TYPED[0])
@example(seed=TYPED[3])
@example(seed=TYPED[5])
def test_sample_takes_any_seed(vae, tiny_ckpt, seed):
    _succeeds(vae("sample", tiny_ckpt, "-n", "4", "--seed", seed, "-o", "s.png"))


def test_sample_draws_alike_for_n_and_n_plus_2_to_the_64(vae, tiny_ckpt):
    for name, seed in (("a.png", 7), ("b.png", 7 + 2**64), ("c.png", 8)):
        _succeeds(vae("sample", tiny_ckpt, "-n", "4", "--seed", seed, "-o", name))
    import numpy as np
    from PIL import Image

    a, b, c = (np.asarray(Image.open(n)) for n in ("a.png", "b.png", "c.png"))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@FEW
@given(seed=ANY_SIZE)
@example(seed=TYPED[1])
@example(seed=TYPED[6])
def test_evaluate_and_interpolate_take_any_seed(vae, tiny_ckpt, seed):
    _succeeds(vae("evaluate", tiny_ckpt, "shapes:test", "-k", "2", "--seed", seed, "--json"))
    _succeeds(vae("interpolate", tiny_ckpt, "--seed", seed, "-s", "3", "-o", "i.png"))


@settings(max_examples=4, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(seed=ANY_SIZE)
@example(seed=TYPED[1])
@example(seed=-1)
def test_train_takes_any_seed_and_records_its_residue(vae, seed):
    out = Path("run.safetensors")
    tiny = [*TINY_CLI, "--data-option", "n_train=32", "--data-option", "n_test=16"]
    _succeeds(vae("train", "shapes", *tiny, "--epochs", "1", "--seed", seed, "-o", out, "--force"))
    import vaecli

    assert vaecli.metadata(out)["training"]["seed"] == seed64(seed)


def test_train_with_n_plus_2_to_the_64_is_the_run_of_n(vae):
    for name, seed in (("a.safetensors", 3), ("b.safetensors", 3 + 2**64)):
        _succeeds(vae("train", "shapes", *TINY_CLI, "--epochs", "1", "--seed", seed, "-o", name))
    a, b = load_file("a.safetensors"), load_file("b.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("model."))


def test_a_dataset_option_seed_of_any_size_draws(vae):
    cli = [*TINY_CLI, "--data-option", f"seed={2**64 - 1}", "--epochs", "1", "-o", "big.safetensors"]
    _succeeds(vae("train", "shapes", *cli))


def test_the_explorers_draw_takes_any_seed(tiny_ckpt):
    pytest.importorskip("starlette", reason="vae explore's extra (pip install 'vaecli[explore]') is not installed")
    pytest.importorskip("httpx2", reason="Starlette's test client needs httpx2")
    from starlette.testclient import TestClient

    from vaecli import api, inputs
    from vaecli.explorer import Explorer, app

    model = api.load(tiny_ckpt, "cpu")
    client = TestClient(app(Explorer(model, Path(tiny_ckpt), inputs.load_input("shapes:test", model.meta, limit=8))))

    @FEW
    @given(seed=ANY_SIZE)
    @example(seed=TYPED[0])
    def draw(seed):
        response = client.post("/api/draw", json={"seed": seed})
        assert response.status_code == 200, response.text
        assert len(response.json()["z"]) == model.latent_dim

    draw()
    same = [client.post("/api/draw", json={"seed": s}).json()["z"] for s in (4, 4 + 2**64)]
    assert same[0] == same[1]
