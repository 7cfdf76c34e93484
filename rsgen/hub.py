"""Where pretrained models live: shipped inside the package (``rsgen/weights/<name>/``) or
in any folder holding ``config.json`` + ``model.safetensors``. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

from rsgen.errors import RsgenError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def available_models() -> list[str]:
    """Names of the pretrained models shipped inside the package."""
    if not WEIGHTS_DIR.is_dir():
        return []
    return sorted(p.name for p in WEIGHTS_DIR.iterdir() if (p / "config.json").is_file())


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A shipped model name (``degan-x4``) or a folder with config.json + model.safetensors."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    shipped = WEIGHTS_DIR / str(name_or_path)
    if shipped.is_dir():
        return shipped
    known = ", ".join(available_models()) or "none"
    raise RsgenError(f"no such model folder or built-in model (built-in: {known})", name_or_path)
