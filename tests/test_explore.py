"""`vae explore`: the server's routes through Starlette's test client (answers, refusals, and
that it keeps serving after them), and the page in a real headless Chromium driven by
Playwright (sliders decode, a scatter point sets the code, a prior draw). The browser tests
need Debian's `chromium` and the `playwright` package (.ci/run installs both)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("starlette", reason="vae explore's extra (pip install 'vaecli[explore]') is not installed")
pytest.importorskip("httpx2", reason="Starlette's test client needs httpx2")

from starlette.testclient import TestClient

from vaecli import api, inputs
from vaecli.explorer import MAX_BODY, Explorer, app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def explorer(tiny_ckpt) -> Explorer:
    model = api.load(tiny_ckpt, "cpu")
    found = inputs.load_input("shapes:test", model.meta, limit=40)
    return Explorer(model, Path(tiny_ckpt), found)


@pytest.fixture(scope="module")
def client(explorer) -> TestClient:
    return TestClient(app(explorer))


def _image(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_info_describes_the_model_and_its_encoded_inputs(client, explorer):
    info = client.get("/api/info").json()
    assert info["latent_dim"] == 3 and info["input_shape"] == [1, 8, 8]
    spreads = [d["spread"] for d in info["dims"]]
    assert sorted(d["index"] for d in info["dims"]) == [0, 1, 2] and spreads == sorted(spreads, reverse=True)
    points = info["points"]
    assert len(points["xy"]) == len(points["codes"]) == len(points["labels"]) == 40
    assert np.allclose(points["codes"], explorer.mean.numpy(), atol=1e-4)
    assert set(points["factors"]) >= {"scale", "pos_x"}
    assert [m["epoch"] for m in info["metrics"]] == list(range(1, len(info["metrics"]) + 1))


def test_decoding_follows_the_code(client, explorer):
    a = _image(client.post("/api/decode", json={"z": [0, 0, 0]}))
    b = _image(client.post("/api/decode", json={"z": [3, -3, 3]}))
    assert a.shape[:2] == (8, 8) and np.abs(a.astype(int) - b.astype(int)).max() > 10
    expected = explorer.model.decode(explorer.mean[:1])[0, 0].numpy()
    got = _image(client.post("/api/decode", json={"z": explorer.mean[0].tolist()}))
    assert got.shape == (8, 8) and np.abs(got / 255 - expected).max() < 0.5 / 255 + 1e-6  # the model's own
    row = _image(client.post("/api/decode", json={"z": [[0, 0, 0]] * 4}))
    assert row.shape[:2] == (10, 4 * 8 + 5)  # four images in a row, 1-pixel gaps


def test_reconstructions_interpolations_inputs_and_draws(client, explorer):
    grid = _image(client.get("/api/reconstruct?i=0,1,2"))
    assert grid.shape[:2] == (2 * 8 + 3, 3 * 8 + 4)
    original = _image(client.get("/api/input/1"))
    assert np.array_equal(original, explorer.inputs.images[1, 0].numpy())
    path = _image(client.get("/api/interpolate?a=0&b=1&steps=5"))
    assert path.shape[:2] == (10, 5 * 8 + 6)
    z1 = client.post("/api/draw", json={"temperature": 1.0, "seed": 1}).json()["z"]
    z2 = client.post("/api/draw", json={"temperature": 0.5, "seed": 1}).json()["z"]
    assert len(z1) == 3 and np.allclose(np.array(z1) * 0.5, z2, atol=1e-4)


@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("post", "/api/decode", b"{not json", 400),
        ("post", "/api/decode", b'{"z": [1, 2]}', 400),
        ("post", "/api/decode", b'{"z": [1, 2, NaN]}', 400),
        ("post", "/api/decode", b'{"z": [1, 2, 1e308]}', 400),
        ("post", "/api/decode", b'{"z": [[0, 0, 0]]' + b", [0, 0, 0]" * 100 + b"}", 400),
        ("post", "/api/decode", b'{"z": [true, false, true]}', 400),
        ("post", "/api/decode", b"[" * 100000 + b"]" * 100000, 413),
        ("post", "/api/decode", b'{"z": [' + b"0," * (MAX_BODY // 2) + b"0]}", 413),
        ("post", "/api/draw", b'{"temperature": -1}', 400),
        ("post", "/api/draw", b'{"sampler": "gmm"}', 400),
        ("post", "/api/draw", b'{"seed": "x"}', 400),
        ("get", "/api/input/40", None, 400),
        ("get", "/api/input/-1", None, 400),
        ("get", "/api/input/99999999999999999999", None, 400),
        ("get", "/api/reconstruct?i=0,x", None, 400),
        ("get", "/api/reconstruct", None, 400),
        ("get", "/api/interpolate?a=0&b=1&steps=1000", None, 400),
        ("get", "/static/../explorer.py", None, 404),
        ("get", "/static/..%2F..%2Fpyproject.toml", None, 404),
        ("get", "/static/%2Fetc%2Fpasswd", None, 404),
        ("get", "/etc/passwd", None, 404),
        ("get", "/api/decode", None, 405),
    ],
)
def test_bad_requests_get_a_4xx_and_the_server_keeps_serving(client, method, path, body, status):
    response = client.request(method.upper(), path, content=body)
    assert response.status_code == status, response.text
    assert client.get("/api/info").status_code == 200
    assert _image(client.post("/api/decode", json={"z": [0, 0, 0]})).shape[:2] == (8, 8)


def test_the_page_and_its_files_come_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/explore.js" in page.text
    for name, kind in (("explore.js", "javascript"), ("explore.css", "css")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert "http" not in client.get("/static/explore.js").text.replace("http://www.w3.org/2000/svg", "")


def test_explore_without_its_extra_is_one_line(vae, tiny_ckpt, monkeypatch):
    from conftest import one_line_error

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if not installed
    line = one_line_error(vae("explore", tiny_ckpt), 2)
    assert 'pip install "vaecli[explore]"' in line


# -- in a real browser ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serving(ckpt):
    """`vae explore CKPT` as a user starts it, in a process of its own: its URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaecli", "explore", str(ckpt), "--port", str(port), "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    try:
        line = proc.stdout.readline()  # the URL, once the server listens
        if f"http://127.0.0.1:{port}/" not in line:
            proc.kill()
            pytest.fail(f"vae explore did not start: {line} {proc.stderr.read()[-2000:]}")
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (Debian's), driven by Playwright."""
    if CHROMIUM is None:
        pytest.skip("no chromium here (Debian: apt-get install chromium); CI installs it")
    pytest.importorskip("playwright", reason="the browser tests drive Chromium with playwright")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@contextlib.contextmanager
def _browsing(browser, url):
    """A page on ``url``, once it says it is ready; its script errors in ``page.errors``."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]", timeout=30000)
        page.errors = errors
        yield page
    finally:
        page.close()


@pytest.fixture(scope="module")
def page(tiny_ckpt, browser):
    with _serving(tiny_ckpt) as url, _browsing(browser, url) as page:
        yield page


def _click_point(page, i: int) -> None:
    x, y = page.evaluate(f"state.screen[{i}]")
    box = page.locator("#scatter").bounding_box()
    scale = box["width"] / page.evaluate("document.getElementById('scatter').width")
    page.mouse.click(box["x"] + x * scale, box["y"] + y * scale)


def _decoded(page) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.locator("#decoded").screenshot())).convert("L"), dtype=int)


def _wait_decodes(page, before: int) -> None:
    page.wait_for_function(f"Number(document.getElementById('decoded').dataset.decodes) > {before}", timeout=10000)
    page.wait_for_function("document.getElementById('decoded').complete")


def _decodes(page) -> int:
    return int(page.locator("#decoded").get_attribute("data-decodes") or 0)


def test_the_page_loads_with_its_five_parts(page):
    assert not page.errors
    assert page.locator("input.dim").count() == 3
    assert page.locator("#scatter").is_visible() and page.locator("#recon").is_visible()
    assert page.locator("#curves polyline").count() >= 2
    assert "ready" in page.locator("#status").text_content()


def test_moving_a_slider_changes_the_decoded_image(page):
    before, n = _decoded(page), _decodes(page)
    slider = page.locator("input.dim").first
    slider.focus()
    for _ in range(40):  # 40 steps of 0.05: z = 2
        page.keyboard.press("ArrowRight")
    _wait_decodes(page, n)
    time.sleep(0.3)
    after = _decoded(page)
    assert np.abs(after - before).max() > 20, "the decoded image did not change"
    assert float(slider.input_value()) == pytest.approx(2.0)


def test_clicking_a_point_sets_the_sliders_to_its_code(page):
    info = page.evaluate("state.info")
    _click_point(page, 5)
    page.wait_for_function("state.chosen.length > 0")
    chosen = page.evaluate("state.chosen[state.chosen.length - 1]")
    assert page.evaluate("state.z") == pytest.approx(info["points"]["codes"][chosen], abs=1e-6)
    _click_point(page, page.evaluate("state.screen.length") - 1)
    page.wait_for_function("state.chosen.length === 2")
    page.wait_for_function("document.getElementById('path').complete && !document.getElementById('path').hidden")
    assert page.evaluate("document.getElementById('path').naturalWidth") > 8 * 5
    page.wait_for_function("document.getElementById('recon').complete")
    assert page.evaluate("document.getElementById('recon').naturalWidth") > 8 * 9  # the clicked inputs joined


def test_a_draw_from_the_prior_sets_a_new_code(page):
    before, n = page.evaluate("state.z"), _decodes(page)
    page.click("#draw")
    _wait_decodes(page, n)
    after = page.evaluate("state.z")
    assert after != before and len(after) == 3
    assert not page.errors


@pytest.mark.skipif(
    not (os.environ.get("VAECLI_EXPLORE_CKPT") and os.environ.get("VAECLI_EXPLORE_SCREENSHOT")),
    reason="the README's picture: set VAECLI_EXPLORE_CKPT (an MNIST checkpoint) and VAECLI_EXPLORE_SCREENSHOT (a .png)",
)
def test_the_readme_screenshot(browser):
    """The page on a real model, each part in use: two points chosen (their path and
    reconstructions), a prior draw decoded."""
    with _serving(os.environ["VAECLI_EXPLORE_CKPT"]) as url, _browsing(browser, url) as page:
        for i in (3, 11):
            _click_point(page, i)
        page.wait_for_function("state.chosen.length === 2 && document.getElementById('path').complete")
        n = _decodes(page)
        page.click("#draw")
        _wait_decodes(page, n)
        page.mouse.move(0, 0)
        time.sleep(0.5)
        page.screenshot(path=os.environ["VAECLI_EXPLORE_SCREENSHOT"], full_page=True)
        assert not page.errors


def test_a_class_conditional_model_decodes_the_class_asked_for(tmp_path):
    """A cvae (the 0.5.0 fixture, three classes of shapes): the page gets a class selector, and
    each class decodes differently from the same code."""
    ckpt = Path(__file__).parent / "fixtures" / "v050-cvae.safetensors"
    model = api.load(ckpt, "cpu")
    found = inputs.load_input("shapes:test", model.meta, data_dir=tmp_path, limit=30)
    client = TestClient(app(Explorer(model, ckpt, found)))
    info = client.get("/api/info").json()
    assert info["conditional"] and info["num_classes"] == 3
    assert info["class_names"] == ["square", "ellipse", "heart"]
    a, b = (_image(client.post("/api/decode", json={"z": [0, 0, 0], "label": k})) for k in (0, 2))
    expected = model.decode(torch.zeros(1, 3), labels=torch.tensor([2]))[0, 0].numpy()
    assert np.abs(b / 255 - expected).max() < 0.5 / 255 + 1e-6 and not np.array_equal(a, b)
    assert client.post("/api/decode", json={"z": [0, 0, 0], "label": 3}).status_code == 400
    assert _image(client.get("/api/reconstruct?i=0,1")).shape[:2] == (2 * 8 + 3, 2 * 8 + 3)


def test_a_port_in_use_is_one_line(vae, tiny_ckpt):
    from conftest import one_line_error

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_error(vae("explore", tiny_ckpt, "--port", port), 2)
    assert f"cannot listen on 127.0.0.1:{port}" in line and "give another --port" in line
