"""Losses for GAN super-resolution (DEGAN section 2.4) and the tokenizer's adversarial training."""

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


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's hinge loss: real logits pushed above 1, fake ones below -1."""
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def adaptive_adversarial_weight(
    reconstruction_loss: torch.Tensor, adversarial: torch.Tensor, last_layer: torch.Tensor, limit: float = 1e4
) -> torch.Tensor:
    """VQGAN's balance of the two losses: the ratio of their gradient norms at the decoder's last
    layer, so the adversarial term neither drowns the reconstruction nor vanishes beside it as
    the loss scales drift. A detached scalar in [0, ``limit``]."""
    rec_grad = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True)[0]
    adv_grad = torch.autograd.grad(adversarial, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (adv_grad.norm() + 1e-4)).clamp(0.0, limit).detach()
