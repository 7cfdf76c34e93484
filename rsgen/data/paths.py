"""Where the datasets are: ``$RSGEN_DATA``, or ``shared/data`` beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_root() -> Path:
    """``$RSGEN_DATA`` if set, else ``../shared/data`` next to the working directory or,
    for a source checkout, next to the checkout."""
    if "RSGEN_DATA" in os.environ:
        return Path(os.environ["RSGEN_DATA"])
    beside_cwd = Path("../shared/data")
    beside_checkout = Path(__file__).resolve().parents[3] / "shared" / "data"
    return beside_checkout if not beside_cwd.exists() and beside_checkout.exists() else beside_cwd


def resolve_data_path(path: str | Path, root: str | Path | None = None) -> Path:
    """Absolute paths as given; relative ones under ``root`` (default: the data root)."""
    path = Path(path)
    return path if path.is_absolute() else Path(root or default_data_root()) / path
