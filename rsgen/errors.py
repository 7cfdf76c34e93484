"""Errors that rsgen reports to users as one line, without a traceback."""

from __future__ import annotations

from pathlib import Path


class RsgenError(Exception):
    """A user-facing error: the CLI prints ``error: <message>`` and exits non-zero.

    Raise it for anything a user can fix (bad file, bad option, wrong checkpoint),
    naming the file and the problem in one line.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(f"{path}: {message}" if path is not None else message)
