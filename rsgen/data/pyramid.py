"""One image as a multi-scale pyramid, for single-image diffusion (SinDDM).

Scale 0 is the coarsest; the last scale is the image itself. Sizes follow SinDDM: the short
side of the coarsest scale is about 42-55 px (so the denoiser's ~35 px receptive field sees
a large part of the scene there and learns its layout) and the scale factor is about
r = 1.411 (√2), adjusted so that the sides divide evenly from the coarsest to the full size.
Down- and upsampling are bicubic (antialiased when shrinking), as in the editing paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from rsgen.errors import RsgenError

#: SinDDM's coarsest-scale area (~3110 px) and the clamp on its short side.
COARSEST_AREA = 3110
COARSEST_SIDE = (42, 55)
SCALE_FACTOR = 1.411


@dataclass(frozen=True)
class PyramidShape:
    """Sizes ``(height, width)`` of every scale, coarsest first, and the factor between them."""

    sizes: tuple[tuple[int, int], ...]
    factor: float

    @property
    def num_scales(self) -> int:
        return len(self.sizes)


def coarsest_side(height: int, width: int) -> int:
    """The short side of the coarsest scale: sqrt(3110 · short / long), clamped to 42..55."""
    short, long = min(height, width), max(height, width)
    return min(max(round(math.sqrt(COARSEST_AREA * short / long)), COARSEST_SIDE[0]), COARSEST_SIDE[1])


def pyramid_shape(
    height: int, width: int, factor: float = SCALE_FACTOR, coarsest: int | None = None
) -> PyramidShape:
    """The pyramid of an image of ``height`` x ``width``: as many scales as steps of about
    ``factor`` from ``coarsest`` (default :func:`coarsest_side`) to the short side.

    RsgenError when the image is smaller than the coarsest scale.
    """
    if factor <= 1:
        raise RsgenError(f"pyramid scale factor must be > 1, got {factor}")
    coarsest = coarsest_side(height, width) if coarsest is None else int(coarsest)
    short = min(height, width)
    if short < coarsest:
        raise RsgenError(
            f"image is {width}x{height} px; single-image editing needs at least {coarsest} px per side"
        )
    count = max(1, round(math.log(short / coarsest) / math.log(factor)) + 1)
    factor = math.exp(math.log(short / coarsest) / (count - 1)) if count > 1 else factor
    sizes = tuple(
        (max(1, round(height / factor ** (count - 1 - i))), max(1, round(width / factor ** (count - 1 - i))))
        for i in range(count)
    )
    return PyramidShape(sizes=sizes, factor=factor)


def resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Bicubic resize of ``(B, C, H, W)`` to ``size``, antialiased when shrinking, clamped to [-1, 1]."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    shrinking = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    out = F.interpolate(image, size=size, mode="bicubic", align_corners=False, antialias=shrinking)
    return out.clamp(-1.0, 1.0)


def build_pyramid(image: Tensor, sizes: Sequence[tuple[int, int]]) -> list[Tensor]:
    """``image`` (B, C, H, W) resized to every ``(height, width)`` of ``sizes``, coarsest first
    (the full size gives ``image`` itself)."""
    return [resize(image, size) for size in sizes]


def blurry_pyramid(pyramid: list[Tensor]) -> list[Tensor | None]:
    """x̃^s = up(x^{s-1}) for every scale: None at scale 0."""
    return [None] + [resize(pyramid[s - 1], tuple(pyramid[s].shape[-2:])) for s in range(1, len(pyramid))]


def blur_errors(pyramid: list[Tensor]) -> list[float]:
    """RMSE (in [-1, 1] units) between each scale s > 0 and its blurry version x̃^s."""
    blurry = blurry_pyramid(pyramid)
    return [float((pyramid[s] - blurry[s]).pow(2).mean().sqrt()) for s in range(1, len(pyramid))]
