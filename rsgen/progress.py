"""Progress bars: rsgen's one kind, a tqdm bar on stderr.

Progress goes to stderr so that stdout stays clean for ``--json`` output and tables. Build
every bar with :func:`progress_bar`; ``enabled=False`` (``--quiet``, ``--json``) gives a
disabled bar that still iterates and accepts ``update``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    enabled: bool = True,
    unit: str = "it",
    leave: bool = False,
    **options: Any,
) -> tqdm:
    """A tqdm bar on stderr over ``iterable`` (or a manual one, advanced with ``update``).

    ``leave=False`` (the default) clears the bar when it is done; ``options`` go to tqdm as
    they are (e.g. ``initial``, ``mininterval``).
    """
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=not enabled,
        leave=leave,
        file=sys.stderr,
        dynamic_ncols=True,
        **options,
    )
