"""Losses for GAN super-resolution (DEGAN section 2.4)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from rsgen.models.feature_extractors import FeatureExtractor


def charbonnier(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean Charbonnier penalty sqrt(x^2 + eps^2), a smooth L1."""
    return torch.sqrt(x * x + eps * eps).mean()


class PerceptualLoss(nn.Module):
    """Sum over layers of the Charbonnier distance between deep features of SR and HR."""

    def __init__(self, features: FeatureExtractor) -> None:
        super().__init__()
        self.features = features

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.features(hr)
        return sum(charbonnier(a - b) for a, b in zip(self.features(sr), target, strict=True))


def adversarial_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Binary cross-entropy of discriminator logits against the real (1) / fake (0) label."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)
