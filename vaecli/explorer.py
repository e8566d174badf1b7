"""``vae explore``: the latent space of a checkpoint in the browser.

``Explorer`` holds the model and its encoded inputs and answers the page's questions with
torch (decoding, reconstructions, interpolations, prior draws), one at a time under a lock;
``app`` puts it behind a Starlette application with its own routes only: the page and its
three files (served from the package: the page works offline), and ``/api/...``. Requests are
checked before any work: a body over ``MAX_BODY`` bytes is 413, malformed JSON or values are
400, unknown paths 404, and the server keeps serving. Starlette and uvicorn are the optional
extra ``vaecli[explore]``, imported here only.
"""

from __future__ import annotations

import io
import json
import math
import threading
from pathlib import Path
from typing import Any, Optional

import torch

from .errors import UsageError
from .gaussian import kl_per_dim
from .inputs import Inputs, input_labels
from .latents import interpolate, pca
from .options import seed64

__all__ = ["Explorer", "app", "STATIC", "MAX_BODY"]

STATIC_DIR = Path(__file__).with_name("explorer_static")
STATIC = {"index.html": "text/html", "explore.js": "text/javascript", "explore.css": "text/css"}
MAX_BODY = 64 * 1024  # bytes of a request's body
MAX_ROWS = 64  # codes decoded by one request
MAX_STEPS = 32  # images of an interpolation
MAX_LATENT = 1e4  # |z| accepted (decoding far outside the prior is allowed, absurd values are not)
ACTIVE_NATS = 0.01  # a dimension whose average KL is below this is folded away as inactive


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _png(images: torch.Tensor, nrow: int) -> bytes:
    """Images ``(N, C, H, W)`` in [0, 1] as one PNG: a row of ``nrow``, 1-pixel gaps."""
    from .viz import tile, to_pil

    picture = tile(images.detach().float().cpu().clamp(0, 1), nrow, 1, 1.0) if len(images) > 1 else images[0]
    buffer = io.BytesIO()
    to_pil(picture).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _metrics(ckpt: Path, meta: dict) -> list:
    """Per-epoch records: the metrics log beside the checkpoint (whole lines), else the
    checkpoint's own."""
    log = ckpt.with_name(f"{ckpt.stem}.metrics.jsonl")
    try:
        records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
        if records and all(isinstance(r, dict) for r in records):
            return records
    except (OSError, ValueError):
        pass
    return list(meta.get("metrics") or [])


class Explorer:
    """A model and its encoded ``inputs``: what the page shows and the answers it asks for."""

    def __init__(self, model: Any, ckpt: Path, inputs: Inputs) -> None:
        self.model, self.ckpt, self.inputs, self.lock = model, Path(ckpt), inputs, threading.Lock()
        self.labels = input_labels(model, inputs)
        mean, logvar = model.encode_all(inputs.images, labels=self.labels)
        if model.STOCHASTIC:
            spread = kl_per_dim(mean.double(), logvar.double()).mean(0)
        else:  # no posterior variance: how much each code varies
            spread = mean.double().var(0, unbiased=False)
        self.mean, self.spread = mean.float(), spread
        self.order = spread.argsort(descending=True).tolist()
        if model.latent_dim > 2:
            xy, share = pca(mean)
            self.axes = f"PCA of the codes ({100 * float(share.sum()):.0f}% of their variance)"
        else:
            xy = torch.cat([mean, mean.new_zeros(len(mean), 2 - model.latent_dim)], 1).double()
            self.axes = "the codes" if model.latent_dim == 2 else "the code (one dimension)"
        self.xy = xy.float()
        self.fitted = self._fitted_samplers()
        self.samplers = ["prior", *self.fitted]

    def _fitted_samplers(self) -> dict:
        """The samplers already fitted for this checkpoint (saved beside it), loaded once: drawn
        from without fitting; the page never fits one."""
        from . import sampling
        from .errors import VaeError
        from .plugins import registry

        found = {}
        for name in registry().names("sampler"):
            if name == "prior" or not sampling.sampler_path(self.ckpt, name).exists():
                continue
            try:
                found[name] = sampling.fitted(self.model, self.ckpt, name, None, images=_no_fit)[0]
            except (VaeError, _NoFit):
                pass
        return found

    def info(self) -> dict:
        model, meta = self.model, self.model.meta
        class_names = (meta.get("data") or {}).get("class_names")
        stochastic = bool(model.STOCHASTIC)
        factors = {k: [float(v) for v in torch.as_tensor(f).flatten().tolist()] for k, f in self.inputs.factors.items()}
        return {
            "checkpoint": self.ckpt.name,
            "family": model.kind,
            "latent_dim": model.latent_dim,
            "input_shape": list(model.input_shape),
            "dims": [
                {
                    "index": d,
                    "spread": float(self.spread[d]),
                    "active": float(self.spread[d]) >= ACTIVE_NATS if stochastic else True,
                }
                for d in self.order
            ],
            "spread_name": "KL (nats)" if stochastic else "variance",
            "conditional": bool(model.num_classes),
            "num_classes": int(model.num_classes),
            "class_names": class_names,
            "samplers": self.samplers,
            "points": {
                "xy": [[round(float(a), 4), round(float(b), 4)] for a, b in self.xy.tolist()],
                "codes": [[round(float(v), 4) for v in row] for row in self.mean.tolist()],
                "labels": None if self.inputs.labels is None else [int(v) for v in self.inputs.labels.tolist()],
                "factors": factors,
                "axes": self.axes,
                "source": self.inputs.source,
            },
            "metrics": _metrics(self.ckpt, meta),
        }

    def _label_rows(self, label: Any, n: int) -> Optional[torch.Tensor]:
        if not self.model.num_classes:
            return None
        if label is None:
            label = 0
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < self.model.num_classes:
            raise BadRequest(400, f"label must be a class index from 0 to {self.model.num_classes - 1}")
        return torch.full((n,), label, dtype=torch.long, device=self.model.device)

    def _index(self, value: Any) -> int:
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < len(self.inputs.images):
            raise BadRequest(400, f"an input index from 0 to {len(self.inputs.images) - 1}")
        return value

    def decode(self, body: Any) -> bytes:
        """``{"z": [[...], ...] or [...], "label": k}`` -> the decoded images, one PNG row."""
        if not isinstance(body, dict) or "z" not in body:
            raise BadRequest(400, 'expected {"z": [...]}')
        rows = body["z"]
        rows = [rows] if isinstance(rows, list) and rows and not isinstance(rows[0], list) else rows
        d = self.model.latent_dim
        ok = isinstance(rows, list) and 0 < len(rows) <= MAX_ROWS
        ok = ok and all(isinstance(r, list) and len(r) == d for r in rows)
        ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for r in rows for v in r)
        if not ok:
            raise BadRequest(400, f"z must be 1 to {MAX_ROWS} lists of {d} numbers")
        z = torch.tensor(rows, dtype=torch.float32)
        if not torch.isfinite(z).all() or z.abs().max() > MAX_LATENT:
            raise BadRequest(400, f"z must be finite numbers within +-{MAX_LATENT:g}")
        with self.lock, torch.no_grad():
            images = self.model.decode(z.to(self.model.device), labels=self._label_rows(body.get("label"), len(z)))
        return _png(images, len(images))

    def image(self, index: Any) -> bytes:
        return _png(self.inputs.images[self._index(index)][None].float() / 255, 1)

    def reconstruct(self, indices: list) -> bytes:
        """Originals in the first row, their reconstructions (the decoded posterior means) below."""
        chosen = [self._index(i) for i in indices[:MAX_ROWS]]
        if not chosen:
            raise BadRequest(400, "give input indices, e.g. ?i=0,1,2")
        x = self.inputs.images[chosen]
        labels = None if self.labels is None else self.labels[chosen]
        with self.lock, torch.no_grad():
            recon = self.model.reconstruct(x, labels=labels)
        from .viz import above

        return _png(above(x.float() / 255, recon.float().cpu(), len(chosen)), len(chosen))

    def interpolate(self, a: Any, b: Any, steps: Any) -> bytes:
        """The decoded path between the codes of inputs ``a`` and ``b`` (slerp for a Gaussian
        prior, else straight)."""
        a, b = self._index(a), self._index(b)
        steps = int(steps) if isinstance(steps, str) and steps.isdigit() else steps
        if not isinstance(steps, int) or not 2 <= steps <= MAX_STEPS:
            raise BadRequest(400, f"steps must be 2 to {MAX_STEPS}")
        method = "slerp" if self.model.STOCHASTIC else "lerp"
        path = interpolate(self.mean[a : a + 1], self.mean[b : b + 1], steps, method)[0]
        labels = None if self.labels is None else self.labels[a].repeat(steps)
        with self.lock, torch.no_grad():
            images = self.model.decode(path.to(self.model.device), labels=labels)
        return _png(images, steps)

    def draw(self, body: Any) -> dict:
        """``{"temperature": t, "sampler": name, "seed": s}`` -> ``{"z": [...]}``, one code."""
        if not isinstance(body, dict):
            raise BadRequest(400, "expected a JSON object")
        t, name, seed = body.get("temperature", 1.0), body.get("sampler", "prior"), body.get("seed", 0)
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 <= t <= 10:
            raise BadRequest(400, "temperature must be a number from 0 to 10")
        if name not in self.samplers:
            raise BadRequest(400, f"sampler must be one of {', '.join(self.samplers)}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise BadRequest(400, "seed must be a whole number")
        # the model draws on its device; a sampler with a CPU generator, as in vae sample
        gen = torch.Generator(device=self.model.device if name == "prior" else "cpu").manual_seed(seed64(seed))
        with self.lock, torch.no_grad():
            z = self.model.prior_sample(1, gen) if name == "prior" else self.fitted[name].sample(1, gen, self.model)
        z = z.float().cpu() * t
        return {"z": [round(float(v), 5) for v in z[0].tolist()]}


class _NoFit(Exception):
    pass


def _no_fit():
    raise _NoFit()


def app(explorer: Explorer):
    """The Starlette application serving ``explorer``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def png(data: bytes) -> Response:
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def body_of(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
            raise BadRequest(413, f"a request body holds at most {MAX_BODY} bytes")
        data = b""
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_BODY:
                raise BadRequest(413, f"a request body holds at most {MAX_BODY} bytes")
        try:
            return json.loads(data, parse_constant=lambda c: math.nan)
        except (ValueError, RecursionError):
            raise BadRequest(400, "the body is not JSON") from None

    def guarded(handler):
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except BadRequest as exc:
                return JSONResponse({"error": str(exc)}, status_code=exc.status)
            except UsageError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)

        return endpoint

    async def page(request: Request) -> Response:
        return static_file("index.html")

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:  # only the package's own files: no path reaches anything else
            return JSONResponse({"error": "not found"}, status_code=404)
        return static_file(name)

    def static_file(name: str) -> Response:
        return Response((STATIC_DIR / name).read_bytes(), media_type=STATIC[name])

    async def info(request: Request) -> Response:
        return JSONResponse(explorer.info())

    async def decode(request: Request) -> Response:
        return png(explorer.decode(await body_of(request)))

    async def image(request: Request) -> Response:
        return png(explorer.image(request.path_params["index"]))

    async def reconstruct(request: Request) -> Response:
        return png(explorer.reconstruct([p for p in request.query_params.get("i", "").split(",") if p]))

    async def path(request: Request) -> Response:
        q = request.query_params
        return png(explorer.interpolate(q.get("a"), q.get("b"), q.get("steps", "10")))

    async def draw(request: Request) -> Response:
        return JSONResponse(explorer.draw(await body_of(request)))

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)

    routes = [
        Route("/", page),
        Route("/favicon.ico", no_icon),
        Route("/static/{name}", guarded(static)),
        Route("/api/info", guarded(info)),
        Route("/api/decode", guarded(decode), methods=["POST"]),
        Route("/api/input/{index}", guarded(image)),
        Route("/api/reconstruct", guarded(reconstruct)),
        Route("/api/interpolate", guarded(path)),
        Route("/api/draw", guarded(draw), methods=["POST"]),
    ]
    return Starlette(routes=routes)
