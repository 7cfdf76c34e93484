"""Atomic file and folder writes: a reader sees the old version or the new one, never a part.

Everything rsgen writes (rasters, model folders, checkpoints, caches, plots) is first written to
a hidden temporary sibling (``.<name>.<random>.tmp``, same filesystem) and then moved into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def temp_path_beside(path: Path) -> Path:
    """A new empty hidden file next to ``path`` (created 0600; :func:`publish` widens it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    return Path(name)


def publish(tmp: Path, path: Path) -> None:
    """Give ``tmp`` the permissions a new file gets under the umask and move it onto ``path``."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def discard(*paths: Path) -> None:
    """Remove temporary files, ignoring those already gone."""
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


def write_json(path: str | Path, data: Any, allow_nan: bool = True) -> Path:
    """Write ``data`` as indented JSON (one trailing newline) to ``path``, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, allow_nan=allow_nan) + "\n")
    return Path(path)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """``with atomic_file(dst) as tmp: write(tmp)`` — ``dst`` is replaced only if the block
    finishes; on any error (or Ctrl-C) the temporary file is removed."""
    path = Path(path)
    tmp = temp_path_beside(path)
    try:
        yield tmp
        publish(tmp, path)
    finally:
        discard(tmp)


def write_folder_atomically(directory: Path, write: Callable[[Path], None]) -> Path:
    """Let ``write`` fill a hidden temporary sibling of ``directory``, then swap it in."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    tmp.chmod(0o755)
    try:
        write(tmp)
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            directory.rename(old)
            tmp.rename(directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def _umask() -> int:
    """The process umask (read from /proc where possible: setting it is not thread-safe)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def cache_root() -> Path:
    """Where rsgen keeps what it can rebuild (feature caches, per-image editing models):
    ``$RSGEN_CACHE`` or ``~/.cache/rsgen``."""
    return Path(os.environ.get("RSGEN_CACHE", Path.home() / ".cache" / "rsgen"))
