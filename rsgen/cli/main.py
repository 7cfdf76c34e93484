"""The ``rsgen`` command: a thin layer over the Python API.

Every user mistake surfaces as one line ``error: <file or option>: <problem>`` on stderr,
without a traceback: exit code 1 for bad files, models and values, 2 for command-line usage
errors (unknown option, value of the wrong type). ``--json`` prints one JSON document on
stdout for scripting.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import NoReturn

import typer

from rsgen.cli import demo, edit, evaluate, generate, info, serve, sr, training  # noqa: F401 - each registers its commands
from rsgen.cli.app import app
from rsgen.errors import RsgenError

#: Exit status of a run stopped by Ctrl-C (typer turns KeyboardInterrupt into this) or SIGTERM.
INTERRUPTED, TERMINATED = 130, 143


def main() -> None:
    """Console entry point: one-line errors on stderr, no tracebacks for user mistakes.

    SIGTERM (``timeout``, ``docker stop``, schedulers) stops a command like Ctrl-C does: the
    work in progress unwinds, so no temporary or partial output file is left behind, and one
    line says why the command stopped."""
    terminated = _stop_on_sigterm()
    try:
        with _one_line_warnings():
            code = app(standalone_mode=False)
    except RsgenError as exc:
        _fail(str(exc), 1)
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `rsgen` or `rsgen eval` alone: the help
            typer.echo(exc.ctx.get_help())
            sys.exit(exc.exit_code)
        _fail(_usage_message(exc), exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        code = INTERRUPTED
    if code == INTERRUPTED:
        _fail("terminated (SIGTERM)", TERMINATED) if terminated else _fail("interrupted", INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


def _stop_on_sigterm() -> list[int]:
    """Turn SIGTERM into KeyboardInterrupt; the returned list gets an entry when one arrives."""
    received: list[int] = []

    def handle(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handle)
    return received


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Library chatter off stderr, and what is worth saying in one line ``warning: ...``.

    rasterio's NotGeoreferencedWarning (a plain PNG/JPEG, or a TIFF without a geotransform,
    written or read on purpose) is dropped; GDAL's and libtiff's messages, which rasterio logs,
    are dropped too (their errors still surface as exceptions, hence as ``error:`` lines);
    every other warning, rsgen's log warnings included, is printed as one line. Everything is
    restored on exit (the CLI also runs inside tests).
    """
    from rasterio.errors import NotGeoreferencedWarning

    def show(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
        typer.echo("warning: " + " ".join(str(message).split()), err=True)

    rasterio_logger, rsgen_logger = logging.getLogger("rasterio"), logging.getLogger("rsgen")
    saved = rasterio_logger.level, rsgen_logger.propagate
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter("warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        warnings.showwarning = show  # type: ignore[assignment]  (catch_warnings restores it)
        rasterio_logger.setLevel(logging.CRITICAL)
        rsgen_logger.addHandler(handler)
        rsgen_logger.propagate = False
        try:
            yield
        finally:
            rsgen_logger.removeHandler(handler)
            rasterio_logger.setLevel(saved[0])
            rsgen_logger.propagate = saved[1]


class _OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(super().format(record).split())


def _usage_message(exc: typer.TyperException) -> str:
    """A click/typer usage error as one line, with a pointer to the command's --help."""
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return exc.format_message() + hint


def _fail(message: str, code: int) -> NoReturn:
    typer.echo("error: " + " ".join(message.splitlines()), err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
