"""Building blocks shared by rsgen's convolutional networks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ResidualBlock(nn.Module):
    """conv3x3 -> (norm) -> ReLU -> conv3x3 -> (norm), added to the input (scaled by ``res_scale``)."""

    def __init__(self, channels: int, norm: str = "none", res_scale: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, channels, 3, padding=1)]
        if norm == "batch":
            layers.append(nn.BatchNorm2d(channels))
        layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Conv2d(channels, channels, 3, padding=1))
        if norm == "batch":
            layers.append(nn.BatchNorm2d(channels))
        elif norm != "none":
            raise ValueError(f"unknown residual block norm {norm!r} (use 'none' or 'batch')")
        self.body = nn.Sequential(*layers)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class ChannelAttention(nn.Module):
    """CBAM channel attention: a shared 1x1-conv MLP over avg- and max-pooled descriptors."""

    def __init__(self, channels: int, reduction: int = 16, use_max: bool = True) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1)
        )
        self.use_max = use_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        if self.use_max:
            logits = logits + self.mlp(x.amax(dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(logits)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: a k x k conv over the channel-mean and channel-max maps."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(maps))


def build_attention(kind: str, channels: int, reduction: int = 16, kernel_size: int = 7) -> nn.Module:
    """The attention variants of DEGAN's Table 3: none, se, cam, sam, cbam.

    ``se`` is squeeze-and-excitation (average pooling only), ``cam``/``sam`` are CBAM's
    channel / spatial halves, ``cbam`` applies channel then spatial attention.
    """
    if kind == "none":
        return nn.Identity()
    if kind == "se":
        return ChannelAttention(channels, reduction, use_max=False)
    if kind == "cam":
        return ChannelAttention(channels, reduction)
    if kind == "sam":
        return SpatialAttention(kernel_size)
    if kind == "cbam":
        return nn.Sequential(ChannelAttention(channels, reduction), SpatialAttention(kernel_size))
    raise ValueError(f"unknown attention {kind!r} (use none, se, cam, sam or cbam)")


def conv_relu_stack(channels: list[int], relu_last: bool) -> nn.Sequential:
    """3x3 convs through ``channels`` (e.g. [3, 16, 32]) with ReLU between them."""
    layers: list[nn.Module] = []
    for i, (cin, cout) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
        layers.append(nn.Conv2d(cin, cout, 3, padding=1))
        if relu_last or i < len(channels) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def sinusoidal_embedding(values: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style sin/cos features of ``values`` ``(B,)``: ``(B, dim)``, frequencies
    1 .. 1/10000 (zero-padded when ``dim`` is odd)."""
    half = dim // 2
    steps = torch.arange(half, device=values.device, dtype=torch.float32)
    freqs = torch.exp(-math.log(10000.0) * steps / half)
    angles = values.float()[:, None] * freqs
    return F.pad(torch.cat([angles.sin(), angles.cos()], dim=-1), (0, dim - 2 * half))
