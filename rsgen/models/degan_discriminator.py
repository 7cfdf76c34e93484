"""DEGAN discriminator (paper section 2.3): conv-BN-LeakyReLU blocks, 6x6 pooling, two FC layers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from rsgen.config import ComponentConfig
from rsgen.models.pretrained import PretrainedModel


@dataclass
class DiscriminatorConfig(ComponentConfig):
    """``num_blocks`` conv blocks; channels start at ``base_channels`` and double every other
    block; strides alternate 1, 2 so the spatial size halves every other block."""

    NAME: ClassVar[str] = "degan_discriminator"

    base_channels: int = 64
    num_blocks: int = 8
    kernel_size: int = 3
    fc_size: int = 1024
    negative_slope: float = 0.2


class DEGANDiscriminator(PretrainedModel):
    """Image (N, 3, H, W) in [-1, 1] -> real/fake logit (N,)."""

    config_class = DiscriminatorConfig

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        blocks: list[nn.Module] = []
        cin = 3
        for i in range(config.num_blocks):
            cout = config.base_channels * 2 ** (i // 2)
            stride = 1 if i % 2 == 0 else 2
            blocks += [
                nn.Conv2d(cin, cout, config.kernel_size, stride, config.kernel_size // 2),
                nn.BatchNorm2d(cout),
                nn.LeakyReLU(config.negative_slope, inplace=True),
            ]
            cin = cout
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(6)
        self.fc1 = nn.Linear(cin * 36, config.fc_size)
        self.act = nn.LeakyReLU(config.negative_slope, inplace=True)
        self.fc2 = nn.Linear(config.fc_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.features(x)).flatten(1)
        return self.fc2(self.act(self.fc1(h))).squeeze(1)
