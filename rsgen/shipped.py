"""The pretrained models shipped inside the package (``rsgen/weights/<name>/``), found by name.

Nothing is downloaded: a model is a shipped name or a local folder.
"""

from __future__ import annotations

from pathlib import Path

from rsgen.errors import RsgenError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


MODEL_MARKERS = ("config.json", "model_index.json")
"""Files that make a folder a model folder (``config.json``) or a pipeline folder."""


def is_model_folder(path: Path) -> bool:
    return any((path / marker).is_file() for marker in MODEL_MARKERS)


def available_models() -> list[str]:
    """Names of the pretrained models shipped inside the package."""
    if not WEIGHTS_DIR.is_dir():
        return []
    return sorted(p.name for p in WEIGHTS_DIR.iterdir() if is_model_folder(p))


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A local model folder or a shipped model name (``degan-x4``). A local folder that is not
    a model folder (say a training run called ``rs-clip-judge`` in the working directory) does
    not hide the shipped model of that name."""
    path = Path(name_or_path)
    shipped = WEIGHTS_DIR / str(name_or_path)
    if path.is_dir() and (is_model_folder(path) or not shipped.is_dir()):
        return path
    if shipped.is_dir():
        return shipped
    known = ", ".join(available_models()) or "none"
    raise RsgenError(f"no such model folder or built-in model (built-in: {known})", name_or_path)


def display_name(name_or_path: str | Path) -> str:
    """How a model is named in reports: its folder name, or the shipped name as given."""
    path = Path(name_or_path)
    return path.name if path.is_dir() else str(name_or_path)
