"""DEGAN generator (Li et al., Front. Earth Sci. 2025, section 2.2).

LR image -> conv stem 3->16->32->64->C -> residual blocks (+ long skip) -> attention (CBAM)
-> sub-pixel upsampling (one x2 stage per factor of 2) -> "diffusion module" U-Net at HR
-> tail convs C->64->32->16->3 -> tanh.

Choices the paper leaves open are fields of :class:`DEGANConfig`; see docs/degan.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from rsgen.config import ComponentConfig
from rsgen.models.blocks import ResidualBlock, build_attention, conv_relu_stack
from rsgen.models.degan_refiner import RefinerUNet
from rsgen.models.pretrained import PretrainedModel

SUPPORTED_SCALES = (2, 4)
ATTENTION_KINDS = ("none", "se", "cam", "sam", "cbam")
# Widths beyond this are typos (or out-of-memory kills), not models.
MAX_WIDTH = 4096


@dataclass
class DEGANConfig(ComponentConfig):
    """Hyper-parameters of the DEGAN generator. ``paper`` values are the defaults."""

    NAME: ClassVar[str] = "degan_generator"

    scale: int = 4
    channels: int = 128
    stem_channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    num_res_blocks: int = 14
    res_norm: str = "none"
    res_scale: float = 1.0
    attention: str = "cbam"
    attention_reduction: int = 16
    attention_kernel: int = 7
    diffusion_module: bool = True
    unet_base: int = 64
    unet_transformer: bool = True
    transformer_heads: int = 4
    transformer_ff: int = 1024
    transformer_dropout: float = 0.1
    tail_channels: list[int] = field(default_factory=lambda: [64, 32, 16])
    global_skip: str = "none"
    t_train: str = "uniform"
    t_inference: float = 0.0
    feature_noise: float = 0.1

    def __post_init__(self) -> None:
        if self.scale not in SUPPORTED_SCALES:
            raise ValueError(f"scale must be one of {SUPPORTED_SCALES}, got {self.scale}")
        if self.global_skip not in ("none", "bicubic"):
            raise ValueError(f"global_skip must be 'none' or 'bicubic', got {self.global_skip!r}")
        if self.t_train not in ("uniform", "fixed"):
            raise ValueError(f"t_train must be 'uniform' or 'fixed', got {self.t_train!r}")
        if self.attention not in ATTENTION_KINDS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION_KINDS)}, got {self.attention!r}")
        widths = {
            "channels": [self.channels],
            "stem_channels": self.stem_channels,
            "unet_base": [self.unet_base],
        }
        widths["tail_channels"] = self.tail_channels
        for name, values in widths.items():
            if any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_WIDTH for v in values):
                raise ValueError(f"{name} must be integers in 1..{MAX_WIDTH}, got {values}")
        if not 0 <= self.num_res_blocks <= 256:
            raise ValueError(f"num_res_blocks must be in 0..256, got {self.num_res_blocks}")
        if self.unet_transformer and (
            self.transformer_heads < 1 or (4 * self.unet_base) % self.transformer_heads
        ):
            raise ValueError(
                f"transformer_heads ({self.transformer_heads}) must divide the refiner width 4 * unet_base "
                f"({4 * self.unet_base})"
            )
        if self.attention_reduction < 1 or self.transformer_ff < 1:
            raise ValueError("attention_reduction and transformer_ff must be >= 1")


class DEGANGenerator(PretrainedModel):
    """Maps LR images in [-1, 1] (N, 3, h, w) to SR images in [-1, 1] (N, 3, h*s, w*s)."""

    config_class = DEGANConfig

    def __init__(self, config: DEGANConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.stem = conv_relu_stack([3, *config.stem_channels, c], relu_last=False)
        self.res_blocks = nn.Sequential(
            *[ResidualBlock(c, config.res_norm, config.res_scale) for _ in range(config.num_res_blocks)]
        )
        self.attention = build_attention(
            config.attention, c, config.attention_reduction, config.attention_kernel
        )
        stages = int(math.log2(config.scale))
        self.upsample = nn.Sequential(
            *[
                nn.Sequential(nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2), nn.ReLU(inplace=True))
                for _ in range(stages)
            ]
        )
        self.diffusion = (
            RefinerUNet(
                c,
                c,
                config.unet_base,
                config.unet_transformer,
                config.transformer_heads,
                config.transformer_ff,
                config.transformer_dropout,
            )
            if config.diffusion_module
            else None
        )
        self.tail = conv_relu_stack([c, *config.tail_channels, 3], relu_last=False)

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, lr: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """``lr`` in [-1, 1]; ``t`` (N,) diffusion time steps, drawn per the config when None."""
        features = self.stem(lr)
        features = features + self.res_blocks(features)
        features = self.upsample(self.attention(features))
        if self.diffusion is not None:
            features = self._refine(features, t)
        out = self.tail(features)
        if self.config.global_skip == "bicubic":
            out = out + F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
            return out if self.training else out.clamp(-1.0, 1.0)
        return torch.tanh(out)

    def _refine(self, features: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
        """Run the diffusion module; in training, t is the level of noise added to its input."""
        n = features.shape[0]
        if t is None:
            if self.training and self.config.t_train == "uniform":
                t = torch.rand(n, device=features.device)
            else:
                t = torch.full((n,), self.config.t_inference, device=features.device)
        if self.training and self.config.feature_noise > 0:
            sigma = features.detach().flatten(1).std(dim=1).view(n, 1, 1, 1)
            features = (
                features
                + torch.randn_like(features) * (t.view(n, 1, 1, 1) * self.config.feature_noise) * sigma
            )
        # The U-Net halves the resolution twice: pad to a multiple of 4, then crop back.
        h, w = features.shape[-2:]
        pad_h, pad_w = (-h) % 4, (-w) % 4
        if pad_h or pad_w:
            features = F.pad(features, (0, pad_w, 0, pad_h), mode="replicate")
        return self.diffusion(features, t)[..., :h, :w]
