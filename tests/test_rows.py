"""Rows as data: vectors (N, D), counts and tables of typed columns, read, modelled and written.

The likelihoods of rows are checked against torch.distributions; the table reader on the CSV
forms a user meets; the commands end to end on tables the tests make.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from conftest import ends_in_error, one_line_error
from vaecli import kinds
from vaecli.builtin.dists import Gaussian
from vaecli.builtin.row_dists import NegativeBinomial, Poisson, Table
from vaecli.plugins import registry
from vaecli.testing import example_rows, likelihoods_for

D = torch.distributions


# -- the mathematics ----------------------------------------------------------------------------


def test_negbin_and_poisson_match_torch_distributions():
    gen = torch.Generator().manual_seed(0)
    layout, _ = example_rows("counts", 8)
    x = torch.poisson(torch.full((8, 4), 4.0), generator=gen)
    log_mean = torch.randn(8, 4, generator=gen)
    nb = NegativeBinomial(theta=1.0)
    nb.bind(layout)
    with torch.no_grad():
        nb.log_theta.copy_(torch.tensor([-1.0, 0.0, 1.5, 3.0]))
    theta, mean = nb.log_theta.exp(), log_mean.exp()
    # torch's NB counts successes with probability p before total_count failures: mean r p / (1 - p)
    expected = D.NegativeBinomial(total_count=theta, probs=mean / (theta + mean)).log_prob(x)
    got = nb.column_log_probs(x, log_mean.unsqueeze(1))
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)
    poisson = Poisson()
    poisson.bind(layout)
    got = poisson.column_log_probs(x, log_mean.unsqueeze(1))
    assert torch.allclose(got, D.Poisson(mean).log_prob(x), atol=1e-5, rtol=0)


def test_table_columns_match_torch_distributions_and_missing_cells_drop_out():
    layout, raw = example_rows("table", 32, seed=3)
    assert layout.missing and torch.isnan(raw).any()
    table = Table()
    table.bind(layout)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        table.log_sigma.fill_(-0.3)
        table.log_theta.fill_(0.7)
    params = torch.randn(32, 1, layout.features, generator=gen)
    x = kinds.to_model(layout, raw)
    got = table.column_log_probs(x, params)  # (B, 4)
    p = params[:, 0]
    num, cat, binary, count = layout.columns
    sigma = torch.logaddexp(torch.tensor(-0.3), torch.tensor(math.log(1e-3))).exp()
    # the numeric column's density in the data's own units: N(shift + scale mu, (scale sigma)^2)
    expected = [
        D.Normal(num.shift + num.scale * p[:, num.start], num.scale * sigma).log_prob(raw[:, 0].nan_to_num(0)),
        D.Categorical(logits=p[:, cat.start : cat.stop]).log_prob(raw[:, 1].nan_to_num(0).long()),
        D.Bernoulli(logits=p[:, binary.start]).log_prob(raw[:, 2].nan_to_num(0)),
        D.NegativeBinomial(
            total_count=torch.tensor(0.7).exp(),
            probs=p[:, count.start].exp() / (torch.tensor(0.7).exp() + p[:, count.start].exp()),
        ).log_prob(raw[:, 3].nan_to_num(0)),
    ]
    for j, want in enumerate(expected):
        missing = torch.isnan(raw[:, j])
        assert torch.allclose(got[~missing, j], want[~missing].float(), atol=1e-5), layout.columns[j].name
        assert (got[missing, j] == 0).all()
    assert torch.allclose(table.log_prob(x, params), got.sum(1))


def test_table_draws_and_means_follow_the_decoders_probabilities():
    """Categorical columns of different widths (padded blocks): a draw picks each category as
    often as its probability, never the padding; the mean is each block's probabilities."""
    from vaecli.hookspecs import Column

    columns = [
        Column("a", "categorical", ("x", "y")),
        Column("b", "categorical", ("p", "q", "r", "s")),
        Column("n", "numeric"),
    ]
    raw = torch.tensor([[0.0, 3.0, 1.0], [1.0, 0.0, 2.0]])
    layout = kinds.learn("table", columns, raw)
    table = Table()
    table.bind(layout)
    a, b, n = layout.columns
    p = torch.zeros(1, 1, layout.features)
    p[0, 0, a.start : a.stop] = torch.tensor([0.9, 0.1]).log()
    p[0, 0, b.start : b.stop] = torch.tensor([0.1, 0.2, 0.3, 0.4]).log()
    mean = table.mean(p)
    assert torch.allclose(mean[0, a.start : a.stop], torch.tensor([0.9, 0.1]), atol=1e-6)
    assert torch.allclose(mean[0, b.start : b.stop], torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=1e-6)
    draws = table.sample(p.expand(40_000, 1, layout.features), torch.Generator().manual_seed(0))
    assert torch.equal(draws[:, a.start : a.stop].sum(1), torch.ones(40_000))  # one category each, no padding
    assert torch.equal(draws[:, b.start : b.stop].sum(1), torch.ones(40_000))
    share = draws[:, b.start : b.stop].mean(0)
    assert torch.allclose(share, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.01)
    assert abs(float(draws[:, a.start].mean()) - 0.9) < 0.01


def test_a_skewed_column_is_modelled_on_the_log_scale_with_its_jacobian():
    from vaecli.hookspecs import Column

    gen = torch.Generator().manual_seed(0)
    raw = torch.cat([torch.randn(400, 1, generator=gen).mul(1.2).exp() * 1000, torch.randn(400, 1, generator=gen)], 1)
    layout = kinds.learn("table", [Column("pay"), Column("z")], raw)
    pay, z = layout.columns
    assert pay.transform == "log1p" and z.transform == ""
    x = kinds.to_model(layout, raw)
    assert torch.allclose(kinds.from_model(layout, x)[:, 0], raw[:, 0].double(), rtol=1e-5)  # undone on output
    table = Table()
    table.bind(layout)
    p = torch.randn(400, 1, layout.features, generator=gen)
    sigma = torch.logaddexp(torch.tensor(0.0), torch.tensor(math.log(1e-3))).exp()
    y = torch.log1p(raw[:, 0].double())
    # p(x) = N(log(1 + x); shift + scale mu, (scale sigma)^2) / (1 + x)
    want = D.Normal(pay.shift + pay.scale * p[:, 0, pay.start].double(), pay.scale * sigma.double()).log_prob(y) - y
    got = table.column_log_probs(x, p)[:, 0]
    assert torch.allclose(got.double(), want, atol=1e-4)


def test_gaussian_on_vectors_is_a_density_in_the_data_units():
    gen = torch.Generator().manual_seed(0)
    raw = torch.randn(50, 3, generator=gen) * torch.tensor([0.01, 1.0, 300.0]) + torch.tensor([5.0, 0.0, -7.0])
    columns = [registry_column(f"x{j}") for j in range(3)]
    layout = kinds.learn("vector", columns, raw)
    lik = Gaussian(0.1, "auto", 1e-3)
    lik.bind(layout)
    assert lik.learn_sigma == "feature" and tuple(lik.log_sigma.shape) == (3,)
    mu = torch.randn(50, 3, generator=gen)
    got = lik.log_prob(kinds.to_model(layout, raw), mu.unsqueeze(1))
    scale = torch.tensor([c.scale for c in layout.columns])
    shift = torch.tensor([c.shift for c in layout.columns])
    sigma = torch.logaddexp(torch.zeros(3), torch.full((3,), math.log(1e-3))).exp()
    want = D.Normal(shift + scale * mu, scale * sigma).log_prob(raw).sum(1)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-4)


def registry_column(name: str, type_: str = "numeric"):
    from vaecli.hookspecs import Column

    return Column(name, type_)


@pytest.mark.parametrize("name", likelihoods_for("vector") + likelihoods_for("counts") + likelihoods_for("table"))
def test_every_likelihood_of_rows_keeps_the_contract(name):
    from vaecli.testing import check_likelihood

    check_likelihood(name)


def test_layout_round_trip_and_scaling():
    layout, raw = example_rows("table", 40)
    back = kinds.Layout.from_json(layout.to_json())
    assert back == layout
    x = kinds.to_model(layout, raw)
    assert x.shape == (40, layout.features)
    num = layout.columns[0]
    present = ~torch.isnan(raw[:, 0])
    assert abs(float(x[present, 0].mean())) < 1e-5 and abs(float(x[present, 0].std(unbiased=False)) - 1) < 1e-4
    decoded = kinds.from_model(layout, x.nan_to_num(0))
    full = ~torch.isnan(raw).any(1)
    assert torch.allclose(decoded[full], raw[full].double(), atol=1e-3)
    assert num.low == float(raw[present, 0].min()) and num.high == float(raw[present, 0].max())


# -- reading tables ------------------------------------------------------------------------------


def _load(path, **options):
    from vaecli.data import load_dataset

    return load_dataset(f"table:{path}", {"test_fraction": 0.25, **options}, data_dir=".").splits


@pytest.mark.parametrize(
    "text,sep",
    [
        ('age,city,ok\n31,"Paris, FR",1\n45,Rome,0\n,Rome,1\n28,Oslo,\n', ","),
        ("\ufeffage;city;ok\n31;Paris, FR;1\n45;Rome;0\nNA;Rome;1\n28;Oslo;\n", ";"),
        ("age\tcity\tok\n31\tParis, FR\t1\n45\tRome\t0\n?\tRome\t1\n28\tOslo\t\n", "\t"),
    ],
    ids=["comma-quoted", "semicolon-bom", "tab"],
)
def test_csv_forms_give_one_table(tmp_path, text, sep):
    (tmp_path / "t.csv").write_text(text, encoding="utf-8")
    splits = _load(tmp_path / "t.csv", test_fraction=0)
    assert [(c.name, c.type) for c in splits.columns] == [("age", "numeric"), ("city", "categorical"), ("ok", "binary")]
    assert splits.columns[1].categories == ("Oslo", "Paris, FR", "Rome")
    rows = splits.train.images
    assert rows.shape == (4, 3)
    assert rows[0].tolist() == [31.0, 1.0, 1.0] and math.isnan(rows[2, 0]) and math.isnan(rows[3, 2])


def test_headerless_file_and_given_types(tmp_path):
    (tmp_path / "t.csv").write_text("1,2,3\n4,5,6\n7,8,9\n10,11,0\n")
    splits = _load(tmp_path / "t.csv", count="c2", categorical="c0")
    assert [(c.name, c.type) for c in splits.columns] == [("c0", "categorical"), ("c1", "numeric"), ("c2", "count")]
    assert splits.columns[0].categories == ("1", "4", "7", "10")  # numbers in numeric order


BAD_TABLES = [
    ("ragged", "a,b\n1,2\n3\n", {}, "line 3 has 1 fields"),
    ("text-in-numeric", "a,b\n1,2\n3,x\n", {"numeric": "b"}, "column 'b' is numeric"),
    ("empty-column", "a,b\n1,\n3,\n", {}, "column 'b' is empty"),
    ("empty-file", "", {}, "is empty"),
    ("header-only", "a,b\n", {}, "no rows"),
    ("no-label", "a,b\n1,2\n3,4\n", {"label": "income"}, "no column 'income'"),
    ("negative-count", "a,b\n1,2\n3,-4\n", {"count": "b"}, "counts"),
    ("two-names", "a,a\n1,2\n3,4\n", {}, "two columns are named"),
]


@pytest.mark.parametrize("name,text,options,needle", BAD_TABLES, ids=[b[0] for b in BAD_TABLES])
def test_bad_tables_are_one_line(vae, tmp_path, name, text, options, needle):
    (tmp_path / "t.csv").write_text(text)
    args = [a for k, v in options.items() for a in ("--dataset-option", f"{k}={v}")]
    one_line_error(vae("train", f"table:{tmp_path / 't.csv'}", *args, "-e", "1"), 2, needle)


def test_a_table_too_large_for_memory_is_refused_before_it_is_read(vae, tmp_path, monkeypatch):
    from vaecli import device

    path = tmp_path / "big.csv"
    with open(path, "w") as f:
        f.write("a,b\n1,2\n")
        f.truncate(10 * 2**30)  # a sparse 10 GB file: refused from its size alone
    monkeypatch.setattr(device, "free_bytes", lambda d: 8 * 2**30)
    one_line_error(vae("train", f"table:{path}", "-e", "1"), 2, "big.csv", "memory", "sample of the rows")


# -- the commands on a table ---------------------------------------------------------------------


def _write_table(path, n=240, seed=0, gaps=True):
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["age", "income", "job", "member", "kids", "label"])
        for i in range(n):
            job = rng.choice(["clerk", "nurse", "pilot"])
            age = int(rng.integers(20, 70))
            income = round(float(rng.lognormal(10 + (job == "pilot"), 0.3)), 2)
            w.writerow([age, "" if gaps and i % 10 == 3 else income, job, int(age > 40), int(rng.poisson(1.2)), job])


@pytest.fixture(scope="module")
def table_ckpt(tmp_path_factory):
    import vaecli

    folder = tmp_path_factory.mktemp("table")
    _write_table(folder / "people.csv")
    ckpt = folder / "people.safetensors"
    vaecli.train(
        dataset=f"table:{folder / 'people.csv'}",
        dataset_options={"label": "label", "count": "kids"},
        arch_options={"hidden": (32,)},
        latent_dim=4,
        epochs=3,
        batch_size=32,
        out=str(ckpt),
        data_dir=str(folder),
    )
    return ckpt


def test_train_records_the_table(table_ckpt):
    import vaecli

    model = vaecli.load(table_ckpt)
    layout = model.likelihood.layout
    assert model.meta["model"]["likelihood"]["name"] == "table"
    assert [(c.name, c.type) for c in layout.columns] == [
        ("age", "numeric"),
        ("income", "numeric"),
        ("job", "categorical"),
        ("member", "binary"),
        ("kids", "count"),
        ("label", "categorical"),
    ]
    assert layout.missing and layout.columns[0].decimals == 0 and layout.columns[1].decimals == 2
    assert model.meta["data"]["kind"] == "table" and model.meta["data"]["class_names"] == ["clerk", "nurse", "pilot"]


def test_sample_writes_the_tables_own_columns(vae, table_ckpt, tmp_path):
    out = tmp_path / "syn.csv"
    result = vae("sample", str(table_ckpt), "-n", "300", "-o", str(out))
    assert result.exit_code == 0, result.output
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 300 and list(rows[0]) == ["age", "income", "job", "member", "kids", "label"]
    assert {r["job"] for r in rows} <= {"clerk", "nurse", "pilot"} and len({r["job"] for r in rows}) > 1
    assert {r["member"] for r in rows} <= {"0", "1"}
    ages = [int(r["age"]) for r in rows]  # whole numbers within the training range
    assert min(ages) >= 20 and max(ages) <= 69 and len(set(ages)) > 5
    assert all(int(r["kids"]) >= 0 for r in rows)
    assert all(len(r["income"].split(".")[1]) == 2 for r in rows)
    again = tmp_path / "again.npy"
    assert vae("sample", str(table_ckpt), "-n", "300", "-o", str(again)).exit_code == 0
    values = np.load(again)
    assert values.shape == (300, 6) and values[:, 0].tolist() == ages  # the same seed, the same draws


def test_evaluate_per_column_and_per_example(vae, table_ckpt, tmp_path):
    scores = tmp_path / "scores.csv"
    result = vae("evaluate", str(table_ckpt), "-k", "20", "--per-example", str(scores), "--json")
    assert result.exit_code == 0, result.output
    import json

    numbers = json.loads(result.stdout)
    assert set(numbers["columns"]) == {"age", "income", "job", "member", "kids", "label"}
    # the column terms are one draw's reconstruction: close to the k-sample average
    assert abs(sum(numbers["columns"].values()) - numbers["recon"]) < 0.1 * abs(numbers["recon"]) + 1
    with open(scores) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == numbers["examples"] == 24
    nll = np.array([float(r["nll"]) for r in rows])
    assert abs(nll.mean() - numbers["nll"]) < 1e-3 * abs(numbers["nll"]) + 1e-3
    assert all(float(r["nelbo"]) >= float(r["nll"]) - 1e-3 for r in rows)  # the ELBO bounds log p(x) below


def test_an_odd_row_scores_higher(vae, table_ckpt, tmp_path):
    """An anomaly score: a row far from the table costs more nats than the table's own."""
    new = tmp_path / "new.csv"
    new.write_text(
        "age,income,job,member,kids,label,extra\n35,22000,clerk,0,1,clerk,x\n35,9999999,pilot,0,40,nurse,y\n"
    )
    scores = tmp_path / "s.csv"
    result = vae("evaluate", str(table_ckpt), f"table:{new}", "-k", "20", "--per-example", str(scores))
    assert result.exit_code == 0, result.output
    assert "left out column(s) the model does not know: extra" in result.stderr
    with open(scores) as f:
        nll = [float(r["nll"]) for r in csv.DictReader(f)]
    assert nll[1] > nll[0] + 20


def test_a_category_never_seen_is_one_line(vae, table_ckpt, tmp_path):
    new = tmp_path / "new.csv"
    new.write_text("age,income,job,member,kids,label\n35,22000,astronaut,0,1,clerk\n")
    one_line_error(vae("evaluate", str(table_ckpt), str(new)), 2, "'astronaut'", "never saw", "clerk")
    new.write_text("age,income,member,kids,label\n35,22000,0,1,clerk\n")
    one_line_error(vae("evaluate", str(table_ckpt), str(new)), 2, "no column 'job'")


def test_reconstruct_fills_only_the_missing_cells(vae, table_ckpt, tmp_path):
    gaps = tmp_path / "gaps.csv"
    gaps.write_text("age,income,job,member,kids,label\n30,,clerk,0,1,clerk\n,120000.5,pilot,1,,pilot\n")
    out = tmp_path / "filled.csv"
    result = vae("reconstruct", str(table_ckpt), f"table:{gaps}", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "3 missing cells filled" in result.stdout
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["age"] == "30" and rows[0]["job"] == "clerk" and rows[1]["income"] == "120000.50"
    assert float(rows[0]["income"]) > 0 and 20 <= int(rows[1]["age"]) <= 69 and int(rows[1]["kids"]) >= 0


def test_parquet_rows_out_and_back_in(vae, table_ckpt, tmp_path):
    pytest.importorskip("pyarrow")
    out = tmp_path / "syn.parquet"
    assert vae("sample", str(table_ckpt), "-n", "50", "-o", str(out)).exit_code == 0
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    assert table.column_names == ["age", "income", "job", "member", "kids", "label"] and table.num_rows == 50
    assert str(table.schema.field("job").type) == "string" and str(table.schema.field("kids").type) == "int64"
    scores = tmp_path / "s.csv"
    result = vae("evaluate", str(table_ckpt), f"table:{out}", "-k", "5", "--per-example", str(scores))
    assert result.exit_code == 0, result.output
    assert len(scores.read_text().splitlines()) == 51


def test_encode_and_decode_rows(vae, table_ckpt, tmp_path):
    z = tmp_path / "z.npy"
    assert vae("encode", str(table_ckpt), "table:test", "-o", str(z)).exit_code == 0
    codes = np.load(z)
    assert codes.shape == (24, 4)
    out = tmp_path / "decoded.csv"
    result = vae("decode", str(table_ckpt), str(z), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "24 decoded rows" in result.stdout
    interp = tmp_path / "path.csv"
    result = vae("interpolate", str(table_ckpt), "--steps", "5", "-o", str(interp))
    assert result.exit_code == 0, result.output
    with open(interp) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and list(rows[0])[:2] == ["path", "step"]


def test_plot_latent_colours_by_a_column(vae, table_ckpt, tmp_path):
    out = tmp_path / "latent.png"
    result = vae("plot-latent", str(table_ckpt), "--color-by", "income", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1000


def test_pictures_of_images_are_refused_for_rows(vae, table_ckpt, tmp_path):
    one_line_error(vae("sample", str(table_ckpt), "-o", str(tmp_path / "s.png")), 2, ".csv")


# -- vectors and counts --------------------------------------------------------------------------


def test_vectors_and_counts_from_arrays(vae, tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "v.npy", rng.normal(size=(120, 6)).astype(np.float32))
    np.save(tmp_path / "c.npy", rng.poisson(3.0, size=(120, 5)))
    for name, likelihood, kind in (("v", "gaussian", "vector"), ("c", "negbin", "counts")):
        ckpt = tmp_path / f"{name}.safetensors"
        result = vae("train", f"tensor:{tmp_path / name}.npy", "-e", "1", "-z", "2", "-o", str(ckpt))
        assert result.exit_code == 0, result.output
        assert f"rows of {6 if name == 'v' else 5} columns ({kind})" in result.stderr
        out = tmp_path / f"{name}-s.npy"
        assert vae("sample", str(ckpt), "-n", "10", "-o", str(out)).exit_code == 0
        values = np.load(out)
        assert values.shape == (10, 6 if name == "v" else 5)
        if kind == "counts":
            assert (values >= 0).all() and (values == values.round()).all()
        import vaecli

        assert vaecli.load(ckpt).meta["model"]["likelihood"]["name"] == likelihood


def test_parts_that_do_not_take_rows_are_one_line(vae, tmp_path):
    np.save(tmp_path / "v.npy", np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32))
    data = f"tensor:{tmp_path / 'v.npy'}"
    one_line_error(vae("train", data, "-a", "conv", "-e", "1"), 2, "architecture 'conv'", "mlp")
    one_line_error(vae("train", data, "-l", "bernoulli", "-e", "1"), 2, "likelihood 'bernoulli'", "gaussian")
    one_line_error(vae("train", data, "-l", "negbin", "-e", "1"), 2, "likelihood 'negbin'")
    ends_in_error(vae("train", data, "--viz-dir", str(tmp_path / "viz"), "-e", "1"), 2, "--viz-dir")


def _families():
    reg = registry()
    return [n for n in reg.names("model") if not reg.get("model", n).spec.conditional]


@pytest.mark.parametrize("family", _families())
def test_every_family_trains_and_samples_on_rows(family, tmp_path, one_thread):
    """Every family that does not depend on pixels works on rows (a table with every column type)."""
    import vaecli
    from vaecli.rows import write_rows

    layout, raw = example_rows("table", 96, seed=5)
    write_rows(tmp_path / "t.csv", layout, raw)
    ckpt = tmp_path / "m.safetensors"
    vaecli.train(
        dataset=f"table:{tmp_path / 't.csv'}",
        dataset_options={"count": "k"},
        model=family,
        arch_options={"hidden": (8,)},
        latent_dim=2,
        epochs=1,
        batch_size=32,
        out=str(ckpt),
        data_dir=str(tmp_path),
    )
    model = vaecli.load(ckpt)
    x = model.sample(5, mode="sample", generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, layout.features) and torch.isfinite(x).all()
