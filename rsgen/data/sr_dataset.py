"""Training pairs for super-resolution: random HR crops, LR by Pillow bicubic downscale.

All HR images are decoded once and kept in memory as uint8. Each batch is drawn from an
RNG seeded by ``(seed, rank, step)``, so a resumed or re-run training sees the same batches
and every DDP rank sees different ones, with no DataLoader state to checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rsgen.data.degradation import bicubic_downscale
from rsgen.data.images import image_to_tensor
from rsgen.errors import RsgenError
from rsgen.io import list_images, read_rgb_uint8


class SRPairSampler:
    """Draws (LR, HR) batches of random crops from folders of HR images."""

    def __init__(
        self,
        folders: Sequence[Path],
        scale: int,
        hr_crop: int,
        augment: bool = True,
        seed: int = 0,
        rank: int = 0,
    ) -> None:
        if hr_crop % scale:
            raise RsgenError(f"hr_crop {hr_crop} must be divisible by scale {scale}")
        self.files = [f for folder in folders for f in list_images(folder)]
        self.images = [read_rgb_uint8(f) for f in self.files]
        small = [f for f, im in zip(self.files, self.images, strict=True) if min(im.shape[:2]) < hr_crop]
        if small:
            raise RsgenError(f"image smaller than hr_crop={hr_crop}", small[0])
        self.scale, self.hr_crop, self.augment = scale, hr_crop, augment
        self.seed, self.rank = seed, rank

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch for training step ``step``: LR (N,3,c/s,c/s) and HR (N,3,c,c) in [-1, 1]."""
        rng = np.random.default_rng([self.seed, self.rank, step])
        pairs = [self._sample(rng) for _ in range(batch_size)]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    def _sample(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[rng.integers(len(self.images))]
        h, w = image.shape[:2]
        top, left = rng.integers(h - self.hr_crop + 1), rng.integers(w - self.hr_crop + 1)
        crop = image[top : top + self.hr_crop, left : left + self.hr_crop]
        if self.augment:
            crop = np.rot90(crop, k=int(rng.integers(4)))
            if rng.integers(2):
                crop = crop[:, ::-1]
        hr = Image.fromarray(np.ascontiguousarray(crop))
        return image_to_tensor(bicubic_downscale(hr, self.scale)), image_to_tensor(hr)
