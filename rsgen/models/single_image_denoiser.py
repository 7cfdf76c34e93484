"""The denoiser of single-image diffusion (SinDDM's network, used by the editing paper).

Fully convolutional, with no attention and no down- or upsampling, so it trains on one image
and samples at any size: a small receptive field (~35 px) makes it learn the image's local
statistics rather than memorise the whole layout at fine scales. Four blocks, each a 5x5
depthwise conv, the (t, s) embedding added per channel, then conv3x3 → GELU → conv3x3 with
a residual; widths ``width/2 → width → width → width/2``. The timestep t and the scale s each
get a sinusoidal embedding; both are concatenated and go through two fully connected layers
with GELU (the paper's Fig. 5), and each block injects the result through GELU → Linear.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from rsgen.config import ComponentConfig
from rsgen.models.blocks import sinusoidal_embedding
from rsgen.models.pretrained import PretrainedModel


@dataclass
class SingleImageDenoiserConfig(ComponentConfig):
    """Sizes of :class:`SingleImageDenoiser`."""

    NAME: ClassVar[str] = "single_image_denoiser"

    width: int = 64
    """Widest channel count (SinDDM uses 160 on a GPU)."""
    embedding_dim: int = 32
    """Size of each sinusoidal embedding and of the joint (t, s) vector."""
    channels: int = 3

    def __post_init__(self) -> None:
        for name in ("width", "embedding_dim", "channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ValueError(f"{self.NAME}: {name} must be an integer >= 2, got {value!r}")


class ConditionedConvBlock(nn.Module):
    """Depthwise 5x5, + embedding, conv3x3 - GELU - conv3x3, + residual (1x1 when widths differ)."""

    def __init__(self, in_channels: int, out_channels: int, embedding_dim: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 5, padding=2, groups=in_channels)
        self.condition = nn.Sequential(nn.GELU(), nn.Linear(embedding_dim, in_channels))
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        h = self.depthwise(x) + self.condition(embedding)[:, :, None, None]
        return self.body(h) + self.skip(x)


class SingleImageDenoiser(PretrainedModel):
    """ε-prediction ``(B, C, H, W)`` from a noisy image, its timesteps ``t`` ``(B,)`` and the
    pyramid scale ``scale`` (an int or ``(B,)``), at any H and W."""

    config_class = SingleImageDenoiserConfig

    def __init__(self, config: SingleImageDenoiserConfig) -> None:
        super().__init__()
        self.config = config
        width, emb, half = config.width, config.embedding_dim, config.width // 2
        self.embed = nn.Sequential(nn.Linear(2 * emb, 4 * emb), nn.GELU(), nn.Linear(4 * emb, emb))
        widths = [config.channels, half, width, width, half]
        self.blocks = nn.ModuleList(
            ConditionedConvBlock(widths[i], widths[i + 1], emb) for i in range(len(widths) - 1)
        )
        self.head = nn.Conv2d(half, config.channels, 1)

    def condition(self, t: torch.Tensor, scale: int | torch.Tensor) -> torch.Tensor:
        """The joint (t, s) embedding ``(B, embedding_dim)``."""
        scale = torch.as_tensor(scale, device=t.device).expand(t.shape[0])
        dim = self.config.embedding_dim
        features = torch.cat([sinusoidal_embedding(t, dim), sinusoidal_embedding(scale, dim)], dim=1)
        return self.embed(features.to(self.head.weight.dtype))

    def forward(self, x: torch.Tensor, t: torch.Tensor, scale: int | torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
        embedding = self.condition(t, scale)
        h = x
        for block in self.blocks:
            h = block(h, embedding)
        return self.head(h)
