"""The disentanglement metrics on constructed codes whose answer is known: the factors
themselves, a permuted and rescaled copy, independent noise, and a code that mixes two factors;
and the pieces against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vaecli.disentanglement import METRICS, discretize_factor, modularity, mutual_information, scores
from vaecli.errors import UsageError

pytest.importorskip("sklearn")

N = 3000
# the chance level of each metric for a code that knows nothing of five factors (see the module)
CHANCE = {"factorvae_score": 0.35, "explicitness": 0.6, "dci_informativeness": 0.25}


def _factors(n: int = N) -> dict:
    rng = np.random.default_rng(0)
    cont = rng.random((n, 4))
    return {
        "shape": rng.integers(0, 3, n),  # categorical
        "scale": cont[:, 0],
        "orientation": cont[:, 1],
        "pos_x": cont[:, 2],
        "pos_y": cont[:, 3],
        "colour": np.zeros(n, np.int64),  # one value: carries nothing
    }


@pytest.fixture(scope="module")
def results() -> dict:
    f = _factors()
    truth = np.column_stack([f[k] for k in ("shape", "scale", "orientation", "pos_x", "pos_y")]).astype(float)
    rng = np.random.default_rng(1)
    codes = {
        "factors": truth,
        "permuted and rescaled": truth[:, [3, 0, 4, 1, 2]] * np.array([2.0, -3.0, 1.5, 7.0, -1.0]) + 5.0,
        "noise": rng.normal(size=(N, 5)),
        "two factors mixed": np.column_stack(
            [truth[:, 1] + truth[:, 2], truth[:, 1] - truth[:, 2], truth[:, 0], truth[:, 3], truth[:, 4]]
        ),
    }
    return {name: scores(c, f, seed=0) for name, c in codes.items()}


@pytest.mark.parametrize("name", ["factors", "permuted and rescaled"])
def test_a_code_equal_to_the_factors_scores_near_one(results, name):
    r = results[name]
    for metric in METRICS:
        assert r[metric] > 0.9, (metric, r[metric])
    assert r["factors"] == ["shape", "scale", "orientation", "pos_x", "pos_y"] and r["skipped"] == ["colour"]


def test_permuting_and_rescaling_changes_nothing(results):
    for metric in METRICS:
        assert results["permuted and rescaled"][metric] == pytest.approx(results["factors"][metric], abs=0.02)


def test_independent_noise_scores_near_chance(results):
    r = results["noise"]
    for metric in ("mig", "dci_disentanglement", "dci_completeness", "sap"):
        assert r[metric] < 0.05, (metric, r[metric])
    for metric, level in CHANCE.items():
        assert r[metric] < level, (metric, r[metric])
    assert r["explicitness"] > 0.4  # a ROC AUC: 0.5 is chance
    assert r["modularity"] < 0.5  # information spread evenly over the factors


def test_a_code_mixing_two_factors_scores_in_between(results):
    mixed, clean = results["two factors mixed"], results["factors"]
    for metric in ("mig", "dci_disentanglement", "dci_completeness", "sap", "factorvae_score", "modularity"):
        assert 0.3 < mixed[metric] < clean[metric] - 0.05, (metric, mixed[metric], clean[metric])
    # nothing is lost by mixing: a linear read-out still finds both factors
    assert mixed["explicitness"] == pytest.approx(clean["explicitness"], abs=0.02)


def test_the_same_seed_gives_the_same_numbers():
    f = _factors(400)
    codes = np.random.default_rng(2).normal(size=(400, 4)) + np.column_stack([f["scale"]] * 4)
    assert scores(codes, f, seed=3) == scores(codes, f, seed=3)


def test_mutual_information_and_discretization_by_hand():
    a = np.array([0, 0, 1, 1])
    assert mutual_information(a, a) == pytest.approx(math.log(2))
    assert mutual_information(a, np.array([0, 1, 0, 1])) == pytest.approx(0.0)
    assert discretize_factor(np.array([5, 9, 5, 7])).tolist() == [0, 2, 0, 1]
    binned = discretize_factor(np.linspace(0, 1, 100))
    assert binned.min() == 0 and binned.max() == 19 and np.bincount(binned).tolist() == [5] * 20


def test_modularity_by_hand():
    # code 0 knows only factor 0; code 1 knows factors 0 and 1 equally
    mi = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert modularity(mi) == pytest.approx((1.0 + (1 - 0.25 / 0.25)) / 2)


def test_factors_with_one_value_only_are_a_clear_error():
    with pytest.raises(UsageError, match="no factor varies"):
        scores(np.zeros((20, 2)) + np.arange(20)[:, None], {"colour": np.ones(20)})
    with pytest.raises(UsageError, match="NaN"):
        scores(np.full((20, 2), np.nan), {"x": np.arange(20.0)})
