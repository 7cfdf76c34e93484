"""The pretrained models shipped inside the package (``rsgen/weights/<name>/``), found by name.

Nothing is downloaded: a model is a shipped name or a local folder.
"""

from __future__ import annotations

from pathlib import Path

from rsgen.errors import RsgenError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def available_models() -> list[str]:
    """Names of the pretrained models shipped inside the package."""
    if not WEIGHTS_DIR.is_dir():
        return []
    markers = ("config.json", "model_index.json")  # a model folder, or a pipeline folder
    return sorted(p.name for p in WEIGHTS_DIR.iterdir() if any((p / m).is_file() for m in markers))


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A shipped model name (``degan-x4``) or a local model folder."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    shipped = WEIGHTS_DIR / str(name_or_path)
    if shipped.is_dir():
        return shipped
    known = ", ".join(available_models()) or "none"
    raise RsgenError(f"no such model folder or built-in model (built-in: {known})", name_or_path)


def display_name(name_or_path: str | Path) -> str:
    """How a model is named in reports: its folder name, or the shipped name as given."""
    path = Path(name_or_path)
    return path.name if path.is_dir() else str(name_or_path)
