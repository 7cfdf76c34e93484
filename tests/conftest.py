"""Shared fixtures: tiny models, tiny synthetic images, the optional shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("RSGEN_DATA", REPO.parent / "shared" / "data"))

TINY_MODEL = {
    "channels": 8,
    "stem_channels": [4],
    "num_res_blocks": 1,
    "unet_base": 4,
    "transformer_heads": 2,
    "transformer_ff": 16,
    "tail_channels": [8],
    "global_skip": "bicubic",
}
TINY_DISCRIMINATOR = {"base_channels": 4, "num_blocks": 2, "fc_size": 8}


def tiny_overrides(**extra: object) -> list[str]:
    """``--set`` style overrides that shrink degan-cpu to a seconds-long test model."""
    items = {f"model.{k}": v for k, v in TINY_MODEL.items()}
    items.update({f"discriminator.{k}": v for k, v in TINY_DISCRIMINATOR.items()})
    items.update(extra)
    return [f"{k}={v}" for k, v in items.items()]


def textured_image(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture (uint8 H x W x 3), more image-like than white noise."""
    rng = np.random.default_rng(seed)
    h, w = size
    coarse = rng.integers(0, 256, (max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC))


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Six 48x48 PNG/JPEG images in a nested folder."""
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for i in range(6):
        target = folder / ("sub" if i % 2 else "") / f"img{i}.{'png' if i < 4 else 'jpg'}"
        Image.fromarray(textured_image((48, 48), seed=i)).save(target)
    return folder


@pytest.fixture
def tiny_model_dir(tmp_path: Path) -> Path:
    """A saved, randomly initialised tiny x2 generator folder."""
    from rsgen.models import DEGANGenerator

    torch.manual_seed(0)
    generator = DEGANGenerator.from_config({**TINY_MODEL, "scale": 2})
    return generator.save_pretrained(tmp_path / "tiny-x2", dtype=torch.float32)


def needs_shared(*parts: str) -> Path:
    """The path under ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (shared data not available)")
    return path
