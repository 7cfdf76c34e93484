"""The small aerial sample images shipped inside the package (``rsgen/samples/``).

They let ``rsgen demo`` and the browser app's examples run after ``pip install`` with no data
folder; ``rsgen/samples/SOURCE.md`` says where each comes from and how it was made.

>>> sample_path("forest_256.png")          # doctest: +SKIP
PosixPath('.../rsgen/samples/forest_256.png')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsgen.errors import RsgenError

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

FOREST = "forest_256.png"
"""The scene the shipped ``editor-forest-256`` model was trained on."""
HOUSES = "houses_256.png"
"""A residential street (AID), the demo's georeferenced super-resolution scene."""
STORAGE_TANKS = "storage_tanks_256.jpg"


@dataclass(frozen=True)
class EditExample:
    """A sample with an edit that suits it: the prompt and the ROI (x, y, w, h) in its pixels."""

    sample: str
    prompt: str
    roi: tuple[int, int, int, int]


EDIT_EXAMPLES = (
    EditExample(FOREST, "a fire in the forest", (64, 64, 128, 128)),
    EditExample(STORAGE_TANKS, "cracks on the storage tank", (33, 121, 85, 82)),
)
"""The scene set's cases on the samples (the forest ROI scaled 400 -> 256 px with the image, the
storage-tank ROI moved into the 256 px centre crop)."""


def list_samples() -> list[str]:
    """File names of the shipped sample images, sorted."""
    if not SAMPLES_DIR.is_dir():
        return []
    return sorted(p.name for p in SAMPLES_DIR.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def sample_path(name: str) -> Path:
    """The path of a shipped sample image; a one-line RsgenError for an unknown name."""
    path = SAMPLES_DIR / name
    if name not in list_samples():
        known = ", ".join(list_samples()) or "none"
        raise RsgenError(f"no such sample image (shipped: {known})", name)
    return path


def load_sample(name: str) -> np.ndarray:
    """A shipped sample as an (H, W, 3) uint8 RGB array."""
    from rsgen.io.rgb import read_rgb_uint8

    return read_rgb_uint8(sample_path(name))
