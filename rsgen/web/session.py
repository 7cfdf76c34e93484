"""Per-session temp folders and cancel flags of the browser app.

Everything the app writes lives under one root folder (``rsgen-web-*`` in the system temp dir,
also Gradio's upload cache): ``<root>/sessions/<session>/`` holds a session's uploads copies,
outputs and (by default) its editing models, and is deleted when the browser tab closes; the
root is deleted when the server stops. Gradio's own copies of a session's uploads
(``<root>/<hash>/<name>``) are remembered and deleted with the session.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import tempfile
import threading
import weakref
from pathlib import Path

from rsgen.errors import RsgenError

_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class SessionClosed(RsgenError):
    """The browser session ended (tab closed) while its job was running."""


class SessionFiles:
    """The app's temp root, its per-session folders and the sessions' cancel flags.

    Args:
        root: the folder to use (created); a new ``rsgen-web-*`` temp folder if None.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        if root is None:
            self.root = Path(tempfile.mkdtemp(prefix="rsgen-web-")).resolve()
        else:
            self.root = Path(root).resolve()
            self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._uploads: dict[str, set[Path]] = {}
        self._flags: dict[str, dict[str, weakref.WeakSet[threading.Event]]] = {}
        self._closed: set[str] = set()

    # ------------------------------------------------------------------ folders

    def folder(self, session: str) -> Path:
        """The session's folder (created on first use); SessionClosed once it has ended."""
        key = _session_key(session)
        with self._lock:
            if key in self._closed:
                raise SessionClosed("this browser session has ended; reload the page")
            path = self.root / "sessions" / key
            path.mkdir(parents=True, exist_ok=True)
            return path

    def job_folder(self, session: str, kind: str) -> Path:
        """A new empty folder ``<kind>-<random>`` in the session's folder, for one request."""
        return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=self.folder(session)))

    def remember_upload(self, session: str, path: str | Path) -> None:
        """Note a file Gradio stored for this session (deleted with the session)."""
        upload = Path(path).resolve()
        if upload.is_relative_to(self.root):
            with self._lock:
                self._uploads.setdefault(_session_key(session), set()).add(upload)

    # ------------------------------------------------------------------ cancelling

    def cancel_flag(self, session: str, tab: str) -> threading.Event:
        """A new flag for one ``tab`` job of the session: set by the tab's Cancel button while
        the job holds it (a flag per job, so a job started right after a Cancel does not
        un-cancel the one still running to its next tick)."""
        flag = threading.Event()
        with self._lock:
            self._flags.setdefault(_session_key(session), {}).setdefault(tab, weakref.WeakSet()).add(flag)
        return flag

    def cancel(self, session: str, tab: str) -> None:
        """Ask the session's running ``tab`` jobs to stop at their next progress tick."""
        with self._lock:
            flags = list(self._flags.get(_session_key(session), {}).get(tab, ()))
        for flag in flags:
            flag.set()

    # ------------------------------------------------------------------ cleanup

    def finish(self, session: str, job: Path) -> None:
        """After a job: if its session ended meanwhile, delete what the job wrote since."""
        with self._lock:
            closed = _session_key(session) in self._closed
        if closed:
            shutil.rmtree(job, ignore_errors=True)
            _remove_if_empty(job.parent)
            _remove_if_empty(job.parent.parent)

    def close(self, session: str) -> None:
        """The session ended: stop its jobs, delete its folder and its uploads."""
        key = _session_key(session)
        with self._lock:
            self._closed.add(key)
            for flags in self._flags.pop(key, {}).values():
                for flag in flags:
                    flag.set()
            uploads = self._uploads.pop(key, set())
        shutil.rmtree(self.root / "sessions" / key, ignore_errors=True)
        for upload in uploads:
            upload.unlink(missing_ok=True)
            if upload.parent != self.root and upload.parent.is_relative_to(self.root):
                _remove_if_empty(upload.parent)

    def close_all(self) -> None:
        """The server stops: stop every job and delete the whole root."""
        with self._lock:
            for tabs in self._flags.values():
                for flags in tabs.values():
                    for flag in flags:
                        flag.set()
        shutil.rmtree(self.root, ignore_errors=True)


def _session_key(session: str) -> str:
    """A folder name for a session id: the id itself when it is plain, else its hash."""
    if _SAFE_ID.fullmatch(session or ""):
        return session
    return hashlib.sha256((session or "").encode()).hexdigest()[:32]


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()
