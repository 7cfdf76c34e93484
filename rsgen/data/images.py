"""Images as model tensors: rsgen's one convention is float ``(3, H, W)`` in [-1, 1].

Every reader, sampler, metric and pipeline converts uint8 RGB images with these functions,
so the rounding and the value range are the same everywhere.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def image_to_tensor(image: np.ndarray | Image.Image) -> torch.Tensor:
    """A uint8 RGB image (PIL, or array ``(H, W, 3)``) → float32 ``(3, H, W)`` in [-1, 1]."""
    array = np.asarray(image, dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0


def tensor_to_image(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` tensor in [-1, 1] → uint8 array ``(H, W, 3)``, rounded and clamped."""
    array = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round()
    return array.byte().permute(1, 2, 0).cpu().numpy()


def center_square(image: np.ndarray | Image.Image, size: int) -> Image.Image:
    """The short side resized to ``size`` (bicubic) and the centre ``size x size`` cropped
    (unchanged when the image is that size already)."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    if pil.size == (size, size):
        return pil
    scale = size / min(pil.size)
    width, height = max(size, round(pil.width * scale)), max(size, round(pil.height * scale))
    left, top = (width - size) // 2, (height - size) // 2
    return pil.resize((width, height), Image.BICUBIC).crop((left, top, left + size, top + size))
