"""A patch discriminator for the text-to-image tokenizer's adversarial loss (VQGAN's choice,
after pix2pix's "PatchGAN").

Strided 4x4 convolutions halve the image ``layers`` times, then two stride-1 convolutions give a
map of logits, each judging one overlapping patch (70 px for ``layers`` 3) as real or decoded.
Judging patches rather than whole images asks the decoder for realistic local texture, which
is what an L1 + perceptual reconstruction from 1,024 codes lacks (it comes out blurry), while
the layout stays the reconstruction losses' job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from rsgen.config import ComponentConfig
from rsgen.models.pretrained import PretrainedModel


@dataclass
class PatchDiscriminatorConfig(ComponentConfig):
    """``layers`` stride-2 stages after the first convolution; widths start at ``channels`` and
    double per stage up to 8x."""

    NAME: ClassVar[str] = "patch_discriminator"

    channels: int = 64
    layers: int = 3
    negative_slope: float = 0.2

    def __post_init__(self) -> None:
        if self.channels < 1 or self.layers < 1:
            raise ValueError(f"channels and layers must be >= 1, got {self.channels} and {self.layers}")


class PatchDiscriminator(PretrainedModel):
    """Images ``(B, 3, H, W)`` in [-1, 1] → patch logits ``(B, 1, h, w)`` (real: high)."""

    config_class = PatchDiscriminatorConfig

    def __init__(self, config: PatchDiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        slope, width = config.negative_slope, config.channels
        layers: list[nn.Module] = [nn.Conv2d(3, width, 4, stride=2, padding=1), nn.LeakyReLU(slope)]
        for stage in range(1, config.layers + 1):
            stride = 2 if stage < config.layers else 1
            out = config.channels * min(2**stage, 8)
            layers += [
                nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(slope),
            ]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)
