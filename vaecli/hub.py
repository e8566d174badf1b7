"""The Hugging Face Hub: ``hf://OWNER/REPO[@REVISION][/FILE]`` wherever a checkpoint is read,
and ``vae push CKPT REPO_ID`` (the checkpoint, a model card and a grid of samples).

Everything goes through ``huggingface_hub`` (the ``hub`` extra), imported only when a hub
checkpoint is named: its cache (``HF_HOME``), revisions, token and offline mode
(``HF_HUB_OFFLINE=1``) are the user's as for any other Hub library. A downloaded checkpoint is
a safetensors file read and verified like a local one: nothing in it is executed.

Names a command derives from its checkpoint (``CKPT-samples.png``, fitted samplers) are made
in the current folder from the repository's name, never inside the cache."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .errors import UsageError, first_line

__all__ = ["PREFIX", "HubRef", "parse", "resolve", "beside", "push", "model_card", "INSTALL"]

PREFIX = "hf://"
FILE = "model.safetensors"  # what `vae push` uploads, and what hf://OWNER/REPO reads
INSTALL = "pip install 'vaecli[hub]'"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
SAMPLES = 64  # prior draws in the card's picture

# a checkpoint fetched into the hub cache -> (the hf:// name it was asked by, REPO.safetensors here)
_fetched: dict[Path, tuple[str, Path]] = {}


@dataclass(frozen=True)
class HubRef:
    repo_id: str
    filename: str = FILE
    revision: Optional[str] = None

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        return f"{PREFIX}{self.repo_id}{rev}/{self.filename}"


def is_hub(text: Any) -> bool:
    return isinstance(text, str) and text.startswith(PREFIX)


def parse(text: str) -> HubRef:
    """``hf://owner/repo``, ``hf://owner/repo@v1/runs/a.safetensors`` -> a ``HubRef``."""
    parts = text[len(PREFIX) :].split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise UsageError(f"{text}: a Hub checkpoint is named hf://OWNER/REPO[@REVISION][/FILE.safetensors]")
    owner, (repo, _, revision) = parts[0], parts[1].partition("@")
    filename = "/".join(parts[2:]) or FILE
    if not (NAME.match(owner) and NAME.match(repo)) or (revision == "" and "@" in parts[1]):
        raise UsageError(f"{text}: {owner}/{repo} is not a Hub repository name")
    if not filename.endswith(".safetensors") or any(p in ("", ".", "..") for p in filename.split("/")):
        raise UsageError(f"{text}: the file must be a .safetensors file of the repository")
    return HubRef(f"{owner}/{repo}", filename, revision or None)


def require() -> Any:
    """The ``huggingface_hub`` module, or a one-line error naming the install."""
    try:
        import huggingface_hub
    except ImportError:
        raise UsageError(f"the Hugging Face Hub needs huggingface_hub: {INSTALL}") from None
    return huggingface_hub


def resolve(text: str) -> Path:
    """The local file of a checkpoint: ``text`` itself, or a hub checkpoint downloaded into
    (or found in) the Hugging Face cache."""
    if not is_hub(text):
        return Path(text).expanduser()
    ref = parse(text)
    hf = require()
    from huggingface_hub import constants, errors

    try:
        local = Path(hf.hf_hub_download(ref.repo_id, ref.filename, revision=ref.revision, library_name="vaecli"))
    except errors.LocalEntryNotFoundError:  # before EntryNotFoundError, which it also is
        raise UsageError(
            f"{text}: not in the Hugging Face cache, and the Hub cannot be reached"
            + (" (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else "")
        ) from None
    except errors.RepositoryNotFoundError:
        raise UsageError(
            f"{text}: no such repository on the Hub (or it is private and you are not logged in)"
        ) from None
    except errors.RevisionNotFoundError:
        raise UsageError(f"{text}: the repository has no revision {ref.revision}") from None
    except errors.EntryNotFoundError:
        raise UsageError(f"{text}: the repository has no file {ref.filename}") from None
    except (errors.HfHubHTTPError, OSError, ValueError) as exc:
        raise UsageError(f"{text}: {first_line(exc)}") from None
    stem = ref.repo_id.split("/")[1] + ("" if ref.filename == FILE else "-" + Path(ref.filename).stem)
    _fetched[local] = (text, Path(f"{stem}.safetensors"))
    return local


def beside(ckpt: Path) -> Path:
    """The path names derived from a checkpoint are made from: the checkpoint itself, or for
    one from the Hub ``REPO.safetensors`` in the current folder."""
    return _fetched.get(Path(ckpt), ("", Path(ckpt)))[1]


def shown(ckpt: Path) -> str:
    """A checkpoint as messages and titles name it: the ``hf://`` name it was asked by, not its
    place in the Hugging Face cache."""
    return _fetched.get(Path(ckpt), (str(ckpt), None))[0]


# -- vae push -------------------------------------------------------------------------------------


def model_card(meta: dict, repo_id: str) -> str:
    """The README.md of a pushed checkpoint: what the model is, its scores per epoch, how to
    use it and how to train it again."""
    from .header import TERM_NAMES, fmt_scores
    from .recipe_text import repeat_command

    model, data, metrics = meta.get("model", {}), meta.get("data", {}), meta.get("metrics", [])
    dataset = data.get("dataset", {}).get("name", "?")
    arch = model.get("architecture", {}).get("name", "?")
    likelihood = model.get("likelihood", {}).get("name", "?")
    family = model.get("kind", "vae")
    lines = [
        "---",
        "library_name: vaecli",
        "tags:",
        *(f"- {tag}" for tag in dict.fromkeys(["vaecli", "vae", family, dataset])),
        "---",
        "",
        f"# {repo_id.split('/')[-1]}",
        "",
        f"A {family.upper()} ({arch} architecture, {likelihood} decoder, {model.get('latent_dim')} latent "
        f"dimensions) trained with [vaecli](https://pypi.org/project/vaecli/) on {dataset}"
        + (f" for {meta.get('epoch')} epochs." if meta.get("epoch") else "."),
        "",
        "![Prior samples](samples.png)",
        "",
        f"{SAMPLES} draws from the prior, decoded (the mean image of each).",
        "",
        "## Use",
        "",
        "```bash",
        "pip install 'vaecli[hub]'",
        f"vae sample hf://{repo_id} -n 64 -o samples.png",
        f"vae info hf://{repo_id}",
        "```",
        "",
        "```python",
        "import vaecli",
        f'model = vaecli.load("hf://{repo_id}")',
        "```",
    ]
    if metrics:
        keys = [k for k in metrics[-1] if k.startswith("test_")]
        names = [TERM_NAMES.get(k[len("test_") :], k[len("test_") :]) for k in keys]
        lines += ["", "## Test scores per epoch (nats per example)", ""]
        lines += ["| epoch | " + " | ".join(names) + " | seconds |", "| ---: |" + " ---: |" * (len(keys) + 1)]
        rows = metrics if len(metrics) <= 20 else metrics[:: max(1, len(metrics) // 20)] + metrics[-1:]
        for m in {m["epoch"]: m for m in rows}.values():
            values = " | ".join(f"{m[k]:.2f}" if isinstance(m.get(k), (int, float)) else "" for k in keys)
            lines.append(f"| {m['epoch']} | {values} | {m.get('seconds', 0):.1f} |")
        lines += ["", f"After the last epoch: {fmt_scores(metrics[-1])}."]
    training = meta.get("training")
    if isinstance(training, dict) and training:
        lines += ["", "## Train it again", "", "```bash", repeat_command(training), "```"]
    versions = meta.get("versions") or {}
    if versions:
        lines += ["", "Made with " + ", ".join(f"{k} {v}" for k, v in versions.items() if v) + "."]
    return "\n".join(lines) + "\n"


def samples_png(model, seed: int = 0) -> bytes:
    """A grid of ``SAMPLES`` decoded prior draws, as PNG bytes."""
    import torch

    from . import viz

    gen = torch.Generator(device=model.device).manual_seed(seed)
    labels = (torch.arange(SAMPLES, device=model.device) % model.num_classes) if model.num_classes else None
    with torch.inference_mode():
        images = model.sample(SAMPLES, generator=gen, labels=labels)
    buffer = io.BytesIO()
    viz.to_pil(viz.grid(images, nrow=8)).save(buffer, format="PNG")
    return buffer.getvalue()


def push(path: Path, repo_id: str, *, private: bool = False, message: Optional[str] = None, api: Any = None) -> str:
    """Upload checkpoint ``path`` to ``repo_id`` as model.safetensors, with README.md (the model
    card) and samples.png, in one commit (the repository is created if missing); returns the
    commit's URL. ``api``: an ``HfApi`` (its token and endpoint); default a new one."""
    from . import factory

    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$", repo_id):
        raise UsageError(f"{repo_id!r} is not a repository id; give OWNER/NAME (e.g. alice/mnist-vae)")
    hf = require()
    model = factory.load(path)  # verified as every checkpoint is, before anything is sent
    card = model_card(model.meta, repo_id)
    picture = samples_png(model)
    api = api if api is not None else hf.HfApi()
    operations = [
        hf.CommitOperationAdd(path_in_repo=FILE, path_or_fileobj=str(path)),
        hf.CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode()),
        hf.CommitOperationAdd(path_in_repo="samples.png", path_or_fileobj=picture),
    ]
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.create_commit(
            repo_id, operations=operations, commit_message=message or f"vae push {Path(path).name}", repo_type="model"
        )
    except Exception as exc:  # network, authentication, permissions: one line
        raise UsageError(f"could not push to {repo_id}: {first_line(exc)}") from None
    return str(getattr(info, "commit_url", "") or f"https://huggingface.co/{repo_id}")
