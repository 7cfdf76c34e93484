"""The one interface of rsgen's image–text (CLIP-family) models.

Every image–text model — the shipped ``rs-clip`` (EfficientNet-Lite0 + MiniLM towers with
trained heads) or real CLIP-family weights from a user's local open_clip file — is an
:class:`ImageTextModel`. Metrics (CLIP score), retrieval evaluation and text-guided editing
only use this interface.

Images are float tensors ``(B, 3, H, W)`` in [-1, 1] (rsgen's convention everywhere), any
size: each model resizes and normalises them itself in :meth:`ImageTextModel.preprocess`,
differentiably, so editing can take gradients of a text–image similarity w.r.t. pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ImageTextModel(nn.Module):
    """Base class: two towers mapping images and texts into one embedding space."""

    #: Human-readable model name, written into every metric's output.
    name: str = "image-text"
    #: Square input size the image tower is fed after :meth:`preprocess`.
    image_size: int = 224
    #: Dimension of the shared embedding space.
    embed_dim: int = 512

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1], any size → the image tower's input (differentiable)."""
        raise NotImplementedError

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Preprocessed pixels → unnormalised image embeddings ``(B, embed_dim)``."""
        raise NotImplementedError

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts → unnormalised text embeddings ``(B, embed_dim)``."""
        raise NotImplementedError

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Images in [-1, 1] ``(B, 3, H, W)`` → embeddings ``(B, embed_dim)``; differentiable."""
        features = self.image_features(self.preprocess(images))
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, texts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        """A list of strings → embeddings ``(len(texts), embed_dim)``."""
        if isinstance(texts, str):
            texts = [texts]
        features = self.text_features(list(texts))
        return F.normalize(features, dim=-1) if normalize else features

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def resize_center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the short side to ``size`` (bicubic, antialiased) and centre-crop a square;
    differentiable, the tensor analogue of CLIP's PIL preprocessing."""
    height, width = images.shape[-2:]
    if (height, width) != (size, size):
        scale = size / min(height, width)
        new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
        images = F.interpolate(
            images, size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False
        )
        top, left = (new_h - size) // 2, (new_w - size) // 2
        images = images[..., top : top + size, left : left + size]
    return images
