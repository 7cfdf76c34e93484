"""DEGAN's refiner, the paper's "diffusion module": a small time-conditioned U-Net with a
Transformer bottleneck. (It is a network inside the generator, not a diffusion process: rsgen's
noise schedules and samplers live in :mod:`rsgen.diffusion`.)

Paper section 2.2.1: encoder of three 3x3 convs (stride 1, 2, 2) to 1/4 resolution,
a time step t in [0, 1] embedded by a 2-layer MLP and added at the bottleneck, one
TransformerEncoder layer over the (H/4 * W/4) bottleneck tokens, and a decoder of
transposed convs with 1x1-conv skip fusions.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class BottleneckTransformer(nn.TransformerEncoderLayer):
    """``nn.TransformerEncoderLayer`` (post-norm, ReLU) whose attention always runs through
    ``scaled_dot_product_attention``.

    PyTorch's inference fast paths (of the layer and of ``nn.MultiheadAttention``)
    materialise the full (tokens x tokens) attention matrix per head: 4 GiB and ~17 s for
    one 512x512 HR tile on a CPU core. SDPA's fused kernels keep memory linear in the
    number of tokens. Same parameters and state-dict keys as the stock layer.
    """

    def forward(self, src: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        x = self.norm1(src + self.dropout1(self._attention(src)))
        return self.norm2(x + self._ff_block(x))

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.self_attn
        n, length, width = x.shape
        heads = attn.num_heads
        qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
        q, k, v = qkv.view(n, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=attn.dropout if self.training else 0.0)
        return attn.out_proj(out.transpose(1, 2).reshape(n, length, width))


class RefinerUNet(nn.Module):
    """Time-conditioned U-Net refining HR feature maps (``in_channels`` -> ``out_channels``).

    The bottleneck width is ``4 * base`` (256 in the paper), which is also the width of
    the time embedding and of the Transformer layer. Input sides must be divisible by 4.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base: int = 64,
        transformer: bool = True,
        heads: int = 4,
        ff_dim: int = 1024,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        width = base * 4
        self.enc1 = nn.Conv2d(in_channels, base, 3, 1, 1)
        self.enc2 = nn.Conv2d(base, base * 2, 3, 2, 1)
        self.enc3 = nn.Conv2d(base * 2, width, 3, 2, 1)
        self.time_mlp = nn.Sequential(nn.Linear(1, width), nn.ReLU(inplace=True), nn.Linear(width, width))
        self.transformer = (
            BottleneckTransformer(width, heads, ff_dim, dropout, batch_first=True) if transformer else None
        )
        self.dec1 = nn.ConvTranspose2d(width, base * 2, 4, 2, 1)
        self.skip2 = nn.Conv2d(base * 2, base * 2, 1)
        self.dec2 = nn.ConvTranspose2d(base * 2, base, 4, 2, 1)
        self.skip1 = nn.Conv2d(base, base, 1)
        self.out = nn.Conv2d(base, out_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x``: (N, C, H, W) with H, W divisible by 4; ``t``: (N,) time steps in [0, 1]."""
        x1 = F.relu(self.enc1(x))
        x2 = F.relu(self.enc2(x1))
        x3 = F.relu(self.enc3(x2))
        x3 = x3 + self.time_mlp(t.view(-1, 1).to(x3.dtype))[:, :, None, None]
        if self.transformer is not None:
            n, c, h, w = x3.shape
            tokens = self.transformer(x3.flatten(2).transpose(1, 2))
            x3 = tokens.transpose(1, 2).reshape(n, c, h, w)
        d1 = F.relu(self.dec1(x3)) + self.skip2(x2)
        d2 = F.relu(self.dec2(d1)) + self.skip1(x1)
        return self.out(d2)
