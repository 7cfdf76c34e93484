"""The LR degradation used everywhere in rsgen: bicubic downscaling with Pillow.

Training pairs, evaluation and the bicubic baseline all go through these two
functions so that "bicubic" means one thing in the whole project.
"""

from __future__ import annotations

from PIL import Image


def crop_to_multiple(image: Image.Image, scale: int) -> Image.Image:
    """Crop the right/bottom edge so both sides are divisible by ``scale``."""
    width, height = image.size
    return image.crop((0, 0, width - width % scale, height - height % scale))


def bicubic_downscale(hr: Image.Image, scale: int) -> Image.Image:
    """LR image = Pillow BICUBIC (antialiased) downscale of ``hr`` by ``scale``.

    ``hr`` must already have sides divisible by ``scale`` (see :func:`crop_to_multiple`).
    """
    width, height = hr.size
    if width % scale or height % scale:
        raise ValueError(f"HR size {width}x{height} is not divisible by scale {scale}")
    return hr.resize((width // scale, height // scale), Image.Resampling.BICUBIC)


def bicubic_upscale(lr: Image.Image, scale: int) -> Image.Image:
    """The bicubic baseline: Pillow BICUBIC upscale of ``lr`` by ``scale``."""
    width, height = lr.size
    return lr.resize((width * scale, height * scale), Image.Resampling.BICUBIC)
