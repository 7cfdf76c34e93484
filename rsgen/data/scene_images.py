"""Whole-scene images of a caption dataset, for the text-to-image tokenizer and transformer.

Every image of the split is decoded once, its short side resized to ``load_size`` (bicubic)
and its centre square kept in memory as uint8. A training batch is a random ``size`` crop of
each drawn image with a random flip / 90° rotation, from an RNG seeded by ``(seed, step)``: a
resumed run sees the same batches, with no loader state to checkpoint. Validation images are the
centre squares resized to ``size``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from rsgen.data.captions import CaptionRecord
from rsgen.data.images import center_square, image_to_tensor
from rsgen.errors import RsgenError
from rsgen.io import read_rgb_uint8
from rsgen.progress import progress_bar


class SceneImages:
    """The images of ``records`` in memory, ready to batch."""

    def __init__(
        self,
        records: Sequence[CaptionRecord],
        size: int,
        load_size: int | None = None,
        augment: bool = True,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        load_size = load_size or size
        if load_size < size:
            raise RsgenError(f"load_size {load_size} must be at least the image size {size}")
        if not records:
            raise RsgenError("no images to train on")
        self.records, self.size, self.augment, self.seed = list(records), size, augment, seed
        self.images = np.stack(
            [
                np.asarray(center_square(read_rgb_uint8(r.path), load_size))
                for r in progress_bar(self.records, desc="images", enabled=progress, unit="img")
            ]
        )

    def __len__(self) -> int:
        return len(self.records)

    def batch(self, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(indices of the drawn records, images (B, 3, size, size) in [-1, 1])`` for ``step``."""
        rng = np.random.default_rng([self.seed, step])
        indices = rng.choice(len(self), size=min(batch_size, len(self)), replace=False)
        return torch.from_numpy(indices), torch.stack([self._view(self.images[i], rng) for i in indices])

    def fixed(self) -> torch.Tensor:
        """Every image, its centre resized to ``size``: ``(N, 3, size, size)`` in [-1, 1]."""
        return torch.stack([image_to_tensor(center_square(image, self.size)) for image in self.images])

    def _view(self, image: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        side = image.shape[0]
        top, left = (int(v) for v in rng.integers(0, side - self.size + 1, size=2))
        crop = image[top : top + self.size, left : left + self.size]
        if self.augment:
            crop = np.rot90(crop, k=int(rng.integers(4)))
            if rng.integers(2):
                crop = crop[:, ::-1]
        return image_to_tensor(Image.fromarray(np.ascontiguousarray(crop)))
