"""Disentanglement metrics of a code against the factors of variation that made the data.

``scores(codes, factors, seed)`` takes the posterior means ``(N, D)`` of N images and their
factors (name -> ``(N,)`` values: integers are categories, floats are ordered values) and
returns the five standard metrics, following the definitions of google's disentanglement_lib
(Locatello et al. 2019) where it has them:

- ``mig``: the mutual information gap (Chen et al. 2018);
- ``dci_disentanglement``, ``dci_completeness``, ``dci_informativeness`` (Eastwood & Williams
  2018), the importances from random forests, one of the two regressors of the paper;
- ``sap`` (Kumar et al. 2018);
- ``factorvae_score`` (Kim & Mnih 2018);
- ``modularity``, ``explicitness`` (Ridgeway & Mozer 2018).

Mutual information needs discrete values: each code dimension is cut into ``BINS`` equal-width
bins (as disentanglement_lib does), each float factor into ``BINS`` equal-frequency bins, an
integer factor is kept as it is. A factor with one value carries no information: it is left out
of every metric and named in ``skipped``. The regressors and classifiers are scikit-learn's,
trained on a seeded 80% of the points and scored on the rest; every random choice comes from
``seed``, so a result is reproducible.

Chance levels differ: MIG, DCI, SAP and modularity are near 0 for a code that knows nothing of
the factors; the FactorVAE score is then near the share of the most frequent vote (about 1 / K
for K factors) and explicitness (a ROC AUC) near 0.5.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np

from .errors import UsageError

__all__ = [
    "scores",
    "information_matrix",
    "mutual_information",
    "discretize_codes",
    "discretize_factor",
    "METRICS",
    "BINS",
]

BINS = 20
METRICS = (
    "mig",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness",
    "sap",
    "factorvae_score",
    "modularity",
    "explicitness",
)
FACTORVAE_BATCH = 64  # codes per vote (Kim & Mnih 2018; disentanglement_lib's default)
FACTORVAE_VOTES = 2000  # votes to train the majority-vote classifier, and as many to score it
COLLAPSED = 0.05  # a code dimension with variance below this is left out of FactorVAE votes


def discretize_codes(codes: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Each column cut into ``bins`` equal-width bins over its range: ``(N, D)`` ints."""
    out = np.zeros(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, j], bins)
        out[:, j] = np.digitize(codes[:, j], edges[1:-1])
    return out


def discretize_factor(values: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Integer factors as they are (relabelled 0..K-1); float factors in ``bins`` equal-frequency
    bins (fewer when they have fewer distinct values)."""
    if values.dtype.kind in "iub":
        return np.unique(values, return_inverse=True)[1].reshape(-1)
    distinct = np.unique(values)
    if len(distinct) <= bins:
        return np.searchsorted(distinct, values)
    edges = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(np.digitize(values, edges), return_inverse=True)[1].reshape(-1)


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) in nats of two discrete labelings (non-negative ints) of the same points."""
    n = len(a)
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1.0)
    joint /= n
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum())


def _entropy(a: np.ndarray) -> float:
    p = np.bincount(a) / len(a)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _mi_matrix(codes_d: np.ndarray, factors_d: list) -> np.ndarray:
    """(D, K) mutual information of each discretized code dimension with each factor."""
    return np.array([[mutual_information(codes_d[:, i], f) for f in factors_d] for i in range(codes_d.shape[1])])


def _varying(factors: dict, n: int) -> tuple[list, list, list]:
    """``(names, values, skipped)``: the factors with more than one value among ``n`` points,
    as flat arrays, and the names of those with one value only."""
    names, values, skipped = [], [], []
    for name, v in factors.items():
        v = np.asarray(v).reshape(-1)
        if len(v) != n:
            raise UsageError(f"factor {name} has {len(v)} values for {n} codes")
        if len(np.unique(v)) < 2:
            skipped.append(name)
        else:
            names.append(name)
            values.append(v)
    return names, values, skipped


def information_matrix(codes: Any, factors: dict) -> tuple[list, np.ndarray]:
    """``(factor names, matrix (D, K))``: the mutual information of each code dimension with
    each factor over the factor's entropy (0: knows nothing of it, 1: determines it), the
    factors with one value left out."""
    codes = np.asarray(codes, dtype=np.float64)
    names, values, _ = _varying(factors, len(codes))
    if not names:
        return [], np.zeros((codes.shape[1], 0))
    factors_d = [discretize_factor(v) for v in values]
    mi = _mi_matrix(discretize_codes(codes), factors_d)
    return names, mi / np.array([_entropy(f) for f in factors_d])[None, :]


def mig(mi: np.ndarray, factors_d: list) -> float:
    """Chen et al. 2018, eq. 6: the mean over factors of the gap between the two codes that
    know most of a factor, over the factor's entropy."""
    gaps = []
    for k, f in enumerate(factors_d):
        top = np.sort(mi[:, k])[::-1]
        second = top[1] if len(top) > 1 else 0.0
        gaps.append((top[0] - second) / _entropy(f))
    return float(np.mean(gaps))


def modularity(mi: np.ndarray) -> float:
    """Ridgeway & Mozer 2018, eq. 2: how far each code's information is from being about one
    factor only, averaged over the codes that carry any (one factor: 1 by definition)."""
    k = mi.shape[1]
    if k == 1:
        return 1.0
    theta = mi.max(axis=1)
    template = np.zeros_like(mi)
    template[np.arange(len(mi)), mi.argmax(axis=1)] = theta
    informative = theta > 0
    if not informative.any():
        return 0.0
    delta = ((mi - template) ** 2).sum(axis=1)[informative] / (theta[informative] ** 2 * (k - 1))
    return float(np.mean(1.0 - delta))


def _entropy_base(p: np.ndarray, base: int, axis: int) -> np.ndarray:
    p = np.clip(p, 1e-12, None)
    return -(p * np.log(p)).sum(axis=axis) / math.log(base)


def dci(train: tuple, test: tuple, seed: int) -> dict:
    """Eastwood & Williams 2018: a random forest per factor predicts it from the code (bagged
    trees that choose among all code dimensions at every split, so that a dimension the factor
    does not need gets no importance by chance, as with disentanglement_lib's gradient-boosted
    trees at a tenth of their time); the forests' importances R (D, K) give disentanglement (1 minus each code's entropy over the
    factors, base K, weighted by the code's share of importance) and completeness (1 minus
    each factor's entropy over the codes, base D, averaged); informativeness is the forests'
    mean accuracy on the held-out points."""
    from sklearn.ensemble import RandomForestClassifier

    (x_train, ys_train), (x_test, ys_test) = train, test
    d, k = x_train.shape[1], len(ys_train)
    importance, accuracy = np.zeros((d, k)), []
    for j, (y_train, y_test) in enumerate(zip(ys_train, ys_test)):
        forest = RandomForestClassifier(
            n_estimators=20, max_features=None, min_samples_leaf=20, random_state=(seed + j) % 2**32, n_jobs=-1
        )
        forest.fit(x_train, y_train)
        importance[:, j] = np.abs(forest.feature_importances_)
        accuracy.append(float(forest.score(x_test, y_test)))
    total = importance.sum()
    if total <= 0 or d < 2:
        disentanglement = completeness = 0.0 if total <= 0 else 1.0
    else:
        per_code = 1.0 - (
            _entropy_base(importance / importance.sum(1, keepdims=True).clip(1e-12), k, 1) if k > 1 else 0
        )
        weights = importance.sum(1) / total
        disentanglement = float((per_code * weights).sum())
        completeness = float(np.mean(1.0 - _entropy_base(importance / importance.sum(0, keepdims=True), d, 0)))
    return {
        "dci_disentanglement": disentanglement,
        "dci_completeness": completeness,
        "dci_informativeness": float(np.mean(accuracy)),
    }


def sap(train: tuple, test: tuple, categorical: list, seed: int) -> float:
    """Kumar et al. 2018: a score for each (code, factor) from that one code alone, R^2 of a
    linear fit for an ordered factor, the balanced accuracy of a threshold classifier (a
    shallow decision tree) for a categorical one; the mean over factors of the gap between the
    two best codes."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.tree import DecisionTreeClassifier

    (x_train, ys_train), (x_test, ys_test) = train, test
    d = x_train.shape[1]
    gaps = []
    for y_train, y_test, is_cat in zip(ys_train, ys_test, categorical):
        s = np.zeros(d)
        for i in range(d):
            if is_cat:
                depth = max(1, math.ceil(math.log2(max(2, len(np.unique(y_train))))))
                tree = DecisionTreeClassifier(max_depth=depth, random_state=seed % 2**32).fit(
                    x_train[:, i : i + 1], y_train
                )
                s[i] = balanced_accuracy_score(y_test, tree.predict(x_test[:, i : i + 1]))
            else:
                slope, intercept = (
                    np.polyfit(x_train[:, i], y_train, 1) if np.ptp(x_train[:, i]) > 0 else (0.0, y_train.mean())
                )
                residual = y_test - (slope * x_test[:, i] + intercept)
                s[i] = max(0.0, 1.0 - residual.var() / max(y_test.var(), 1e-12))
        top = np.sort(s)[::-1]
        gaps.append(top[0] - (top[1] if d > 1 else 0.0))
    return float(np.mean(gaps))


def factorvae_score(codes: np.ndarray, factors_d: list, rng: np.random.Generator) -> float:
    """Kim & Mnih 2018: codes scaled by their standard deviation over the data; a vote takes a
    factor, a batch of points sharing one value of it, and the code dimension of least variance
    across the batch; a majority-vote classifier maps each dimension to a factor, trained on
    ``FACTORVAE_VOTES`` votes and scored on as many more. Dimensions of variance below
    ``COLLAPSED`` take no part."""
    scale = codes.std(axis=0)
    active = scale**2 >= COLLAPSED
    if not active.any():
        return 0.0
    normalised = codes[:, active] / scale[active]
    groups = [[np.flatnonzero(f == v) for v in range(f.max() + 1)] for f in factors_d]
    groups = [[g for g in gs if len(g) >= 2] for gs in groups]

    def votes(n: int) -> np.ndarray:
        out = np.zeros((normalised.shape[1], len(factors_d)), dtype=np.int64)
        for _ in range(n):
            k = int(rng.integers(len(factors_d)))
            members = groups[k][int(rng.integers(len(groups[k])))]
            batch = normalised[rng.choice(members, FACTORVAE_BATCH, replace=len(members) < FACTORVAE_BATCH)]
            out[int(np.argmin(batch.var(axis=0))), k] += 1
        return out

    train, test = votes(FACTORVAE_VOTES), votes(FACTORVAE_VOTES)
    classifier = train.argmax(axis=1)
    return float(test[np.arange(len(classifier)), classifier].sum() / test.sum())


def explicitness(train: tuple, test: tuple) -> float:
    """Ridgeway & Mozer 2018: a logistic regression per factor from the whole code, one-versus-
    rest over the factor's values; the mean ROC AUC over values, then over factors."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    (x_train, ys_train), (x_test, ys_test) = train, test
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    aucs = []
    for y_train, y_test in zip(ys_train, ys_test):
        model = LogisticRegression(max_iter=200).fit(x_train, y_train)
        proba = model.predict_proba(x_test)
        per_value = []
        for c, value in enumerate(model.classes_):
            truth = y_test == value
            if truth.any() and not truth.all():
                per_value.append(roc_auc_score(truth, proba[:, c]))
        aucs.append(np.mean(per_value) if per_value else 0.5)
    return float(np.mean(aucs))


def scores(
    codes: Any,
    factors: dict,
    seed: int = 0,
    progress: Optional[Callable[[int, int], None]] = None,
) -> dict:
    """The metrics of ``codes`` ``(N, D)`` against ``factors`` (name -> ``(N,)``), with
    ``factors`` (those scored) and ``skipped`` (those with one value)."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise UsageError('the disentanglement metrics need scikit-learn: pip install "vaecli[disentangle]"') from None
    codes = np.asarray(codes, dtype=np.float64)
    n = len(codes)
    if codes.ndim != 2 or n < 10:
        raise UsageError(f"disentanglement metrics need at least 10 codes, got {n}")
    if not np.isfinite(codes).all():
        raise UsageError("the codes hold NaN or infinite values; the model's encoder is broken")
    names, values, skipped = _varying(factors, n)
    if not names:
        raise UsageError(
            f"no factor varies in these {n} images ({', '.join(skipped) or 'none given'}); the metrics need at least one"
        )
    categorical = [v.dtype.kind in "iub" for v in values]
    rng = np.random.default_rng(seed)
    factors_d = [discretize_factor(v) for v in values]
    order = rng.permutation(n)
    train, test = order[: int(0.8 * n)], order[int(0.8 * n) :]
    binned = [(codes[idx], [f[idx] for f in factors_d]) for idx in (train, test)]
    # SAP fits ordered factors by their values, not their bins
    as_values = [
        (codes[idx], [f[idx] if c else v[idx].astype(np.float64) for v, f, c in zip(values, factors_d, categorical)])
        for idx in (train, test)
    ]
    mi = _mi_matrix(discretize_codes(codes), factors_d)
    stages: list[Callable[[], dict]] = [
        lambda: {"mig": mig(mi, factors_d), "modularity": modularity(mi)},
        lambda: dci(binned[0], binned[1], seed),
        lambda: {"sap": sap(as_values[0], as_values[1], categorical, seed)},
        lambda: {"factorvae_score": factorvae_score(codes, factors_d, rng)},
        lambda: {"explicitness": explicitness(binned[0], binned[1])},
    ]
    found: dict[str, Any] = {}
    for done, stage in enumerate(stages, start=1):
        found.update(stage())
        if progress is not None:
            progress(done, len(stages))
    result: dict[str, Any] = {k: found[k] for k in METRICS}
    result.update(factors=names, skipped=skipped, examples=n, mutual_information=mi.tolist(), seed=seed)
    return result
