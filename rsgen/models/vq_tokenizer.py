"""The image tokenizer of text-to-image (RSVQ-Diffusion, after VQ-Diffusion's VQ-VAE).

A convolutional encoder maps an image in [-1, 1] to a grid of vectors ``downsample`` times
smaller; each vector is replaced by its nearest codebook entry (``vector-quantize-pytorch``: EMA
codebook updates, dead codes restarted from the batch; optionally a low-dimensional,
l2-normalised lookup as in ViT-VQGAN); a convolutional decoder maps the
quantised grid back to pixels. The discrete diffusion transformer models the grid of code
indices (the "tokens"): 128 px images with ``downsample`` 8 are 16 x 16 = 256 tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn
from vector_quantize_pytorch import VectorQuantize

from rsgen.config import ComponentConfig
from rsgen.models.pretrained import PretrainedModel


@dataclass
class VQTokenizerConfig(ComponentConfig):
    """Sizes of the tokenizer. ``channels`` are the widths of the resolution levels, from the
    full image down: one stride-2 stage per level after the first.

    Codebook switches (ViT-VQGAN's remedies for unused codes): ``lookup_dim`` projects the
    encoder's ``code_dim`` vectors to a smaller space where the nearest code is looked up;
    ``cosine`` l2-normalises vectors and codes there; ``kmeans_init`` starts the codebook from
    k-means of the first batch. ``dead_code_threshold`` is the EMA use count below which a code
    is restarted from the batch (0: never); a threshold near the mean use per code per batch
    restarts codes at every step."""

    NAME: ClassVar[str] = "vq_tokenizer"

    channels: list[int] = field(default_factory=lambda: [64, 128, 128, 256])
    res_blocks: int = 1
    codebook_size: int = 1024
    code_dim: int = 64
    codebook_decay: float = 0.99
    commitment_weight: float = 0.25
    dead_code_threshold: float = 2.0
    lookup_dim: int | None = None
    cosine: bool = False
    kmeans_init: bool = False

    def __post_init__(self) -> None:
        if len(self.channels) < 2 or any(int(c) < 1 for c in self.channels):
            raise ValueError(f"channels needs at least two positive widths, got {self.channels}")
        if self.codebook_size < 2 or self.code_dim < 1 or self.res_blocks < 0:
            raise ValueError("codebook_size must be >= 2, code_dim >= 1 and res_blocks >= 0")
        if not 0.0 < self.codebook_decay < 1.0:
            raise ValueError(f"codebook_decay must be in (0, 1), got {self.codebook_decay}")
        if self.lookup_dim is not None and not 1 <= self.lookup_dim <= self.code_dim:
            raise ValueError(f"lookup_dim must be in [1, code_dim], got {self.lookup_dim}")
        if self.dead_code_threshold < 0:
            raise ValueError(f"dead_code_threshold must be >= 0, got {self.dead_code_threshold}")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.channels) - 1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with a residual connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            _norm(channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class VQTokenizer(PretrainedModel):
    """Images ``(B, 3, H, W)`` in [-1, 1] (sides divisible by ``downsample``) ⇄ token ids
    ``(B, H / downsample, W / downsample)``."""

    config_class = VQTokenizerConfig

    def __init__(self, config: VQTokenizerConfig) -> None:
        super().__init__()
        self.config = config
        widths, blocks = [int(c) for c in config.channels], config.res_blocks
        encoder: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, padding=1)]
        for level, width in enumerate(widths):
            if level > 0:
                encoder.append(nn.Conv2d(widths[level - 1], width, 4, stride=2, padding=1))
            encoder += [ResBlock(width) for _ in range(blocks)]
        encoder += [_norm(widths[-1]), nn.SiLU(), nn.Conv2d(widths[-1], config.code_dim, 1)]
        self.encoder = nn.Sequential(*encoder)
        self.quantizer = VectorQuantize(
            dim=config.code_dim,
            codebook_size=config.codebook_size,
            decay=config.codebook_decay,
            commitment_weight=config.commitment_weight,
            threshold_ema_dead_code=config.dead_code_threshold,
            codebook_dim=config.lookup_dim if config.lookup_dim != config.code_dim else None,
            use_cosine_sim=config.cosine,
            kmeans_init=config.kmeans_init,
            accept_image_fmap=True,
        )
        decoder: list[nn.Module] = [nn.Conv2d(config.code_dim, widths[-1], 3, padding=1)]
        for level in range(len(widths) - 1, -1, -1):
            decoder += [ResBlock(widths[level]) for _ in range(blocks + 1)]
            if level > 0:
                decoder += [
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(widths[level], widths[level - 1], 3, padding=1),
                ]
        decoder += [_norm(widths[0]), nn.SiLU(), nn.Conv2d(widths[0], 3, 3, padding=1)]
        self.decoder = nn.Sequential(*decoder)

    @property
    def downsample(self) -> int:
        return self.config.downsample

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def last_layer(self) -> torch.Tensor:
        """The weight of the decoder's output convolution (where VQGAN balances its losses)."""
        return self.decoder[-1].weight

    def quantize(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(quantised code vectors (B, code_dim, h, w), token ids, commitment loss)``; the
        codebook moves towards the encoder outputs (EMA) when the quantizer is in training mode."""
        self._check_size(images)
        return self.quantizer(self.encoder(images))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(reconstruction in [-1, 1], token ids, commitment loss)``; in training mode the
        codebook moves towards the encoder outputs (EMA)."""
        quantized, ids, commitment = self.quantize(images)
        reconstruction = self.decoder(quantized)
        return (reconstruction if self.training else reconstruction.clamp(-1, 1)), ids, commitment

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images → token ids ``(B, h, w)`` (int64), without touching the codebook."""
        was_training = self.training
        self.eval()
        _, ids, _ = self.quantize(images)
        self.train(was_training)
        return ids

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids ``(B, h, w)`` → images ``(B, 3, h * downsample, w * downsample)`` in [-1, 1]."""
        if ids.ndim != 3:
            raise ValueError(f"token ids must be (B, h, w), got shape {tuple(ids.shape)}")
        return self.decoder(self.code_vectors(ids)).clamp(-1, 1)

    def code_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids ``(B, h, w)`` → the quantised vectors ``(B, code_dim, h, w)`` the decoder
        reads (the library's ``get_output_from_indices`` projects channel-first image maps the
        wrong way round when ``lookup_dim`` is set)."""
        codes = self.quantizer.project_out(self.quantizer.codebook[ids])
        return codes.permute(0, 3, 1, 2)

    def _check_size(self, images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got shape {tuple(images.shape)}")
        if images.shape[-1] % self.downsample or images.shape[-2] % self.downsample:
            raise ValueError(
                f"image sides must be divisible by {self.downsample}, got {tuple(images.shape[-2:])}"
            )


def codebook_usage(ids: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """How much of the codebook a set of token ids uses: ``perplexity`` (exp of the entropy of
    code frequencies: the effective number of codes, at most ``codebook_size``) and
    ``used_fraction`` (share of codes that occur at all)."""
    counts = torch.bincount(ids.flatten().long(), minlength=codebook_size).double()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
    return {"perplexity": math.exp(entropy), "used_fraction": float((counts > 0).double().mean())}


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels, eps=1e-6)
