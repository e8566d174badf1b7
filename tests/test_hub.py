"""The Hugging Face Hub, offline: ``hf://`` checkpoints read from a hub cache laid out as
huggingface_hub lays it out (and recognised by its own ``scan_cache_dir``), and ``vae push``
checked up to the files and the model card handed to the client."""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import vaecli
from conftest import one_line_error, tiny_run
from vaecli import hub
from vaecli.checkpoint import read

hf = pytest.importorskip("huggingface_hub", reason="the hub extra (pip install 'vaecli[hub]')")

COMMITS = {"main": "a" * 40, "v1": "b" * 40}


def _put(cache: Path, repo_id: str, revision: str, files: dict) -> None:
    """Files of one commit of a model repository in the cache: blobs named by their sha256,
    snapshot entries linking to them, refs/REVISION holding the commit."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = COMMITS[revision]
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))


@pytest.fixture
def cache(tmp_path, monkeypatch, tiny_ckpt):
    """An offline hub cache holding alice/tiny: the tiny checkpoint on main, an older one
    (its first epoch only) at revision v1, and a second file on main."""
    from huggingface_hub import constants

    folder = tmp_path / "hub-cache"
    one_epoch = tmp_path / "one.safetensors"
    vaecli.train(**tiny_run(epochs=1, out=str(one_epoch)))
    data = tiny_ckpt.read_bytes()
    _put(folder, "alice/tiny", "main", {"model.safetensors": data, "runs/other.safetensors": one_epoch.read_bytes()})
    _put(folder, "alice/tiny", "v1", {"model.safetensors": one_epoch.read_bytes()})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return folder


def test_the_cache_is_laid_out_as_huggingface_hub_reads_it(cache):
    (repo,) = hf.scan_cache_dir(cache).repos
    assert repo.repo_id == "alice/tiny" and repo.repo_type == "model"
    files = {(r.commit_hash, f.file_name) for r in repo.revisions for f in r.files}
    assert files == {
        (COMMITS["main"], "model.safetensors"),
        (COMMITS["main"], "other.safetensors"),
        (COMMITS["v1"], "model.safetensors"),
    }


def test_load_reads_the_same_model_from_the_hub(cache, tiny_ckpt):
    local, remote = vaecli.load(tiny_ckpt), vaecli.load("hf://alice/tiny")
    for (name, a), (_, b) in zip(local.state_dict().items(), remote.state_dict().items()):
        assert torch.equal(a, b), name
    assert int(remote.meta["epoch"]) == 2


def test_revisions_and_files_are_chosen_by_name(cache):
    assert int(vaecli.load("hf://alice/tiny@v1").meta["epoch"]) == 1
    assert int(vaecli.load("hf://alice/tiny/runs/other.safetensors").meta["epoch"]) == 1
    assert int(vaecli.load(f"hf://alice/tiny@{COMMITS['main']}").meta["epoch"]) == 2


def test_commands_read_hub_checkpoints_and_write_their_pictures_here(vae, cache):
    before = sorted(p.relative_to(cache) for p in cache.rglob("*"))
    result = vae("sample", "hf://alice/tiny", "-n", "4", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert Path("tiny-samples.png").is_file()  # named from the repository, in the current folder
    with Image.open("tiny-samples.png") as img:
        assert img.size[0] > 8
    result = vae("info", "hf://alice/tiny@v1", "--json")
    assert result.exit_code == 0, result.output
    assert '"epoch": 1' in result.stdout
    assert sorted(p.relative_to(cache) for p in cache.rglob("*")) == before  # nothing written into the cache


def test_titles_and_reports_name_the_hub_checkpoint_not_the_cache(vae, cache):
    result = vae("info", "hf://alice/tiny")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].strip() == "hf://alice/tiny"
    result = vae("evaluate", "hf://alice/tiny@v1", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["checkpoint"] == "hf://alice/tiny@v1"
    result = vae("evaluate", "hf://alice/tiny", "--device", "cpu")
    assert "hf://alice/tiny on shapes:test" in result.stdout and str(cache) not in result.stdout


def test_a_tampered_cached_file_is_refused_like_a_local_one(vae, cache, tiny_ckpt):
    (blob,) = [
        p for p in (cache / "models--alice--tiny" / "blobs").iterdir() if p.read_bytes() == tiny_ckpt.read_bytes()
    ]
    data = bytearray(blob.read_bytes())
    data[-5] ^= 0xFF  # a flipped byte in the last tensor
    blob.write_bytes(bytes(data))
    local = Path("local.safetensors")
    local.write_bytes(bytes(data))
    hub_error = vae("sample", "hf://alice/tiny", "-n", "4", "--device", "cpu")
    local_error = vae("sample", local, "-n", "4", "--device", "cpu")
    assert hub_error.exit_code == local_error.exit_code != 0
    assert "hash" in hub_error.stderr and hub_error.stderr.replace(
        str(hub.resolve("hf://alice/tiny")), "X"
    ) == local_error.stderr.replace(str(local), "X")


@pytest.mark.parametrize(
    "name, needles",
    [
        ("hf://alice/absent", ["not in the Hugging Face cache", "HF_HUB_OFFLINE"]),
        ("hf://alice/tiny/none.safetensors", ["not in the Hugging Face cache"]),
        ("hf://alice/tiny@v9", ["not in the Hugging Face cache"]),
        ("hf://alice", ["hf://OWNER/REPO"]),
        ("hf://alice/tiny/model.pt", [".safetensors file"]),
        ("hf://alice/tiny/../x.safetensors", [".safetensors file"]),
        ("hf://al ice/tiny", ["not a Hub repository name"]),
    ],
)
def test_bad_hub_names_are_one_line(vae, cache, name, needles):
    one_line_error(vae("info", name), 2, name, *needles)


def test_without_huggingface_hub_it_is_one_line(vae, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    one_line_error(vae("info", "hf://alice/tiny"), 2, "pip install 'vaecli[hub]'")


class FakeApi:
    """Records what vae push hands to huggingface_hub's client."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list = []
        self.fail = fail

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        if self.fail:
            raise OSError("401 Client Error: Unauthorized\nmore")  # as HfHubHTTPError (an OSError) says it

    def create_commit(self, repo_id, operations, **kwargs):
        self.calls.append(("create_commit", repo_id, operations, kwargs))
        return hf.CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/{'c' * 40}",
            commit_message=kwargs["commit_message"],
            commit_description="",
            oid="c" * 40,
        )


def _content(op) -> bytes:
    source = op.path_or_fileobj
    return Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)


def test_push_hands_the_checkpoint_card_and_samples_to_the_client(tiny_ckpt):
    api = FakeApi()
    url = hub.push(tiny_ckpt, "alice/tiny", private=True, api=api)
    assert url == f"https://huggingface.co/alice/tiny/commit/{'c' * 40}"
    (_, repo_id, repo_kwargs), (_, commit_repo, operations, commit_kwargs) = api.calls
    assert repo_id == commit_repo == "alice/tiny" and repo_kwargs["private"] and repo_kwargs["exist_ok"]
    assert commit_kwargs["commit_message"] == "vae push tiny.safetensors"
    files = {op.path_in_repo: _content(op) for op in operations}
    assert set(files) == {"model.safetensors", "README.md", "samples.png"}
    assert files["model.safetensors"] == tiny_ckpt.read_bytes()
    with Image.open(io.BytesIO(files["samples.png"])) as img:  # 64 draws, 8 by 8
        assert img.format == "PNG" and img.size[0] == img.size[1] > 8 * 8
    card = files["README.md"].decode()
    meta = read(tiny_ckpt).meta
    assert card.startswith("---\nlibrary_name: vaecli\ntags:\n- vaecli\n- vae\n")
    assert "![Prior samples](samples.png)" in card and "vae sample hf://alice/tiny" in card
    assert "mlp architecture, bernoulli decoder, 3 latent dimensions" in card and "on shapes for 2 epochs" in card
    for record in meta["metrics"]:  # one row per epoch, the test scores to 2 decimals
        assert f"| {record['epoch']} | {record['test_nelbo']:.2f} |" in card
    from vaecli.recipe_text import repeat_command

    assert repeat_command(meta["training"]) in card and "--latent-dim 3" in card


def test_push_command_says_where_it_went(vae, tiny_ckpt, monkeypatch):
    api = FakeApi()
    monkeypatch.setattr(hf, "HfApi", lambda: api)
    result = vae("push", tiny_ckpt, "alice/tiny")
    assert result.exit_code == 0, result.output
    assert "Pushed" in result.stdout and "vae sample hf://alice/tiny" in result.stdout
    assert not api.calls[0][2]["private"]


@pytest.mark.parametrize(
    "repo, fail, needles",
    [
        ("alice", False, ["not a repository id", "OWNER/NAME"]),
        ("alice/tiny", True, ["could not push to alice/tiny", "401"]),
    ],
)
def test_push_failures_are_one_line(vae, tiny_ckpt, monkeypatch, repo, fail, needles):
    monkeypatch.setattr(hf, "HfApi", lambda: FakeApi(fail))
    one_line_error(vae("push", tiny_ckpt, repo), 2, *needles)
