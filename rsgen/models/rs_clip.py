"""RS-CLIP: rsgen's offline remote-sensing image–text model.

Image tower: ImageNet EfficientNet-Lite0 (frozen up to a split; the last ``tuned_blocks`` blocks
may be fine-tuned) → pooled 1280-d → image head. Text tower: frozen all-MiniLM-L6-v2,
mean-pooled 384-d → text head. Both heads map into one ``embed_dim`` space; ``logit_scale`` is
CLIP's learned inverse temperature. Trained with the symmetric InfoNCE loss on RSICD captions
(``rsgen train rs-clip``). A shipped model stores only what training changes (the heads, the
tuned blocks and the temperature); the frozen towers come from the offline PyPI packages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from rsgen.config import ComponentConfig
from rsgen.models.efficientnet_lite0 import FEATURE_DIM as IMAGE_FEATURE_DIM
from rsgen.models.efficientnet_lite0 import IMAGE_SIZE, EfficientNetLite0Trunk
from rsgen.models.image_text import ImageTextModel, resize_center_crop
from rsgen.models.minilm import FEATURE_DIM as TEXT_FEATURE_DIM
from rsgen.models.minilm import MiniLMTextEncoder
from rsgen.models.pretrained import PretrainedModel

MAX_LOGIT_SCALE = math.log(100.0)


@dataclass
class RSCLIPConfig(ComponentConfig):
    NAME: ClassVar[str] = "rs_clip"

    embed_dim: int = 512
    tuned_blocks: int = 0  # last EfficientNet-Lite0 MBConv blocks (+ head conv) that are trained
    image_head: str = "linear"  # linear | mlp
    text_head: str = "mlp"
    head_hidden: int = 1024
    head_dropout: float = 0.1
    init_temperature: float = 0.07


def projection_head(kind: str, in_dim: int, out_dim: int, hidden: int, dropout: float) -> nn.Module:
    """``linear``: one matrix; ``mlp``: Linear-GELU-Dropout-Linear."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp":
        return nn.Sequential(
            nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
        )
    raise ValueError(f"unknown head kind {kind!r} (linear or mlp)")


class RSCLIP(PretrainedModel, ImageTextModel):
    """EfficientNet-Lite0 + MiniLM towers with trained projection heads (see module docstring)."""

    image_size = IMAGE_SIZE
    config_class = RSCLIPConfig

    def __init__(self, config: RSCLIPConfig, name: str = "rs-clip") -> None:
        super().__init__()
        self.config, self.name, self.embed_dim = config, name, config.embed_dim
        self.image_tower = EfficientNetLite0Trunk(config.tuned_blocks)
        self.text_tower = MiniLMTextEncoder()
        head = (config.head_hidden, config.head_dropout)
        self.image_head = projection_head(config.image_head, IMAGE_FEATURE_DIM, config.embed_dim, *head)
        self.text_head = projection_head(config.text_head, TEXT_FEATURE_DIM, config.embed_dim, *head)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.init_temperature)))

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return resize_center_crop(images, self.image_size)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.image_head(self.image_tower(pixels))

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        return self.text_head(self.text_tower(texts))

    def clamped_logit_scale(self) -> torch.Tensor:
        """``exp(logit_scale)`` capped at 100, as in CLIP."""
        return self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()

    def saved_state_dict(self) -> dict[str, torch.Tensor]:
        """What training changes and a shipped model stores."""
        state = {f"image_tower.{k}": v for k, v in self.image_tower.tuned_state_dict().items()}
        state.update({f"image_head.{k}": v for k, v in self.image_head.state_dict().items()})
        state.update({f"text_head.{k}": v for k, v in self.text_head.state_dict().items()})
        state["logit_scale"] = self.logit_scale.data
        return state
