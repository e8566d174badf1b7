"""``vae push``: a checkpoint onto the Hugging Face Hub, with a model card."""

from __future__ import annotations

from typing import Optional

import typer
from typing_extensions import Annotated

from ..console import out
from .app import CkptArg, app


@app.command()
def push(
    ckpt: CkptArg,
    repo_id: Annotated[
        str,
        typer.Argument(
            help="The Hub repository, OWNER/NAME (created if missing).", show_default=False, metavar="REPO_ID"
        ),
    ],
    private: Annotated[bool, typer.Option("--private", help="Create the repository private.")] = False,
    message: Annotated[
        Optional[str], typer.Option("--message", "-m", help="The commit message. Default: vae push CKPT.")
    ] = None,
) -> None:
    r"""Upload a checkpoint to the Hugging Face Hub, with a model card and a grid of samples.

    The checkpoint becomes model.safetensors; README.md tells the model, its scores per epoch and the command that trains it again.

    Needs pip install "vaecli\[hub]" and a token (hf auth login, or HF_TOKEN). Then anyone can use it by name: vae sample hf://OWNER/NAME.
    """
    from ..hub import push as upload

    url = upload(ckpt, repo_id, private=private, message=message)
    out.print(f"Pushed {ckpt} to {repo_id}: {url}")
    out.print(f"Use it anywhere: vae sample hf://{repo_id} -o samples.png")
