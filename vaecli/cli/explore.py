"""``vae explore``: a local web page to move through a model's latent space."""

from __future__ import annotations

from typing import Optional

import typer
from typing_extensions import Annotated

from ..console import out, warn
from ..errors import UsageError
from .app import CkptArg, DataDirOpt, DeviceOpt, NoDownloadOpt, app
from .app import inputs as inputs_of
from .app import model as model_of

LOCAL = ("127.0.0.1", "localhost", "::1")


def _server_modules():
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        raise UsageError(
            'vae explore needs Starlette and uvicorn, which are not installed: pip install "vaecli[explore]"'
        ) from None
    return uvicorn


def _check_port(host: str, port: int) -> None:
    """One line, before the model loads, when the address cannot be listened on."""
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; give another --port (0: any free one)"
        ) from None


@app.command()
def explore(
    ckpt: CkptArg,
    input: Annotated[
        Optional[str],
        typer.Argument(
            help="Images to encode for the scatter (default: the checkpoint's test split).", show_default=False
        ),
    ] = None,
    points: Annotated[int, typer.Option("--points", help="How many inputs to encode and show.")] = 3000,
    host: Annotated[
        str,
        typer.Option("--host", help="Address to listen on. Anything but 127.0.0.1 exposes the page to the network."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0: any free one).")] = 8765,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    no_download: NoDownloadOpt = False,
) -> None:
    r"""Open the latent space in the browser: sliders that decode live, the encoded inputs as a
    scatter (hover, click, interpolate), reconstructions and the training curves.

    Serves one page on http://127.0.0.1:8765 until Ctrl-C; needs pip install "vaecli\[explore]".
    """
    if not 1 <= points <= 20000:
        raise UsageError(f"--points must be 1 to 20000, got {points}")
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be 0 to 65535, got {port}")
    uvicorn = _server_modules()
    _check_port(host, port)
    from ..explorer import Explorer
    from ..explorer import app as web_app

    model = model_of(ckpt, device)
    from ..hub import beside, shown

    explorer = Explorer(model, beside(ckpt), inputs_of(model, input, data_dir, no_download, limit=points))
    if host not in LOCAL:
        warn(f"--host {host}: the page (and the model) can be reached by anyone on that network")
    server = uvicorn.Server(uvicorn.Config(web_app(explorer), host=host, port=port, log_level="warning"))
    import asyncio

    try:
        asyncio.run(_serve(server, f"[{host}]" if ":" in host else host, shown(ckpt)))
    except KeyboardInterrupt:  # uvicorn stops on Ctrl-C, then passes the signal on: a normal end
        pass


async def _serve(server, address: str, name: str) -> None:
    """Serve until Ctrl-C, saying the URL once the server listens (its port, where --port 0)."""
    import asyncio

    async def announce() -> None:
        while not server.started:
            await asyncio.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        out.print(f"Exploring {name} at http://{address}:{port}/  (Ctrl-C to stop)")

    task = asyncio.create_task(announce())
    try:
        await server.serve()
    finally:
        task.cancel()
