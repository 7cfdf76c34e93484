"""``rsgen serve``: the browser app (Generate, Super-resolve, Edit) on a local port."""

from __future__ import annotations

import errno
import importlib.util
import ipaddress
import os
import socket
from pathlib import Path
from typing import Annotated

import typer

from rsgen.cli.app import DeviceOption, app
from rsgen.errors import RsgenError

DEFAULT_T2I_MODEL = "rsvq-cpu"  # = rsgen.pipelines.text_to_image.DEFAULT_MODEL (not imported: startup time)


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every network).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 7860,
    t2i_model: Annotated[
        str, typer.Option(help="Text-to-image model: built-in name or pipeline folder.")
    ] = DEFAULT_T2I_MODEL,
    sr_x2_model: Annotated[
        str, typer.Option(help="x2 super-resolution model (name or folder).")
    ] = "degan-x2",
    sr_x4_model: Annotated[
        str, typer.Option(help="x4 super-resolution model (name or folder).")
    ] = "degan-x4",
    edit_train_steps: Annotated[
        int | None,
        typer.Option(min=1, help="Training steps of each scene's editing model [default: the config's]."),
    ] = None,
    edit_train_config: Annotated[
        str, typer.Option(help="Training config of the editing models (built-in name or YAML file).")
    ] = "single-image-cpu",
    edit_cache: Annotated[
        Path | None,
        typer.Option(help="Keep editing models here across sessions [default: each session's temp folder]."),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(min=1, help="Heavy jobs at once; others queue [default: one per CPU core]."),
    ] = None,
    max_file_size: Annotated[str, typer.Option(help="Largest upload, e.g. 50mb, 1gb.")] = "50mb",
    device: DeviceOption = None,
) -> None:
    """Serve the browser app: generate, super-resolve and edit images from a web page.

    Uploads and results stay in a temp folder per browser session, deleted when its tab
    closes and when the server stops.
    """
    if importlib.util.find_spec("gradio") is None:
        raise RsgenError('the web app needs gradio: pip install "rsgen[web]"')
    _check_size(max_file_size)
    _check_port(host, port)
    if not _is_loopback(host):
        typer.echo(
            f"warning: --host {host}: anyone who can reach this machine can use the app (no login)", err=True
        )
    heavy = jobs or os.cpu_count() or 1
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // heavy))  # one core per heavy job
    from rsgen.web.app import create_app

    web = create_app(
        t2i_model=t2i_model,
        sr_models={2: sr_x2_model, 4: sr_x4_model},
        edit_train_steps=edit_train_steps,
        edit_train_config=edit_train_config,
        edit_cache=edit_cache,
        device=device,
        heavy_jobs=heavy,
        max_file_size=max_file_size,
    )
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"rsgen serve: http://{shown}:{port} ({heavy} job(s) at once; Ctrl-C stops)", err=True)
    try:
        web.launch(host, port)
    finally:
        web.close()


def _check_size(text: str) -> None:
    """A one-line error unless ``text`` is a size like ``50mb``, ``1gb`` or bytes."""
    units = ("kb", "mb", "gb", "b")
    number = text.lower().strip()
    for unit in units:
        if number.endswith(unit):
            number = number[: -len(unit)]
            break
    try:
        ok = float(number) > 0
    except ValueError:
        ok = False
    if not ok:
        raise RsgenError(f"--max-file-size must be a size like 50mb, 1gb or a number of bytes, got {text!r}")


def _check_port(host: str, port: int) -> None:
    """A one-line error when ``host:port`` cannot be listened on (in use, unknown address)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise RsgenError(f"--host {host}: unknown address ({exc.strerror})") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise RsgenError(f"port {port} on {host} is in use; choose another with --port") from None
            raise RsgenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
