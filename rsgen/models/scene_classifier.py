"""rs-scene: an EfficientNet-Lite0 scene classifier fine-tuned on the 30 AID scenes of RSICD.

It is the offline analogue of the Inception-v3 that the RSICD text-to-image protocol
(Txt2Img-MHN) fine-tunes on the RSICD scenes and uses for both IS and FID: its pooled 1280-d
features give ``FD[rs-scene]``/``KID[rs-scene]`` and its 30-way softmax ``IS[rs-scene]``.
Trained with ``rsgen train rs-scene``; the shipped weights hold the fine-tuned last blocks and
the classifier only (see :mod:`rsgen.models.pretrained`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from rsgen.config import ComponentConfig
from rsgen.models.efficientnet_lite0 import FEATURE_DIM, IMAGE_SIZE, EfficientNetLite0Trunk
from rsgen.models.image_text import resize_center_crop
from rsgen.models.pretrained import PretrainedModel


@dataclass
class SceneClassifierConfig(ComponentConfig):
    NAME: ClassVar[str] = "scene_classifier"

    classes: list[str] = field(default_factory=list)
    tuned_blocks: int = 4
    dropout: float = 0.2


class SceneClassifier(PretrainedModel):
    """Images in [-1, 1] (any size) → scene logits; :meth:`features` gives the pooled features."""

    config_class = SceneClassifierConfig
    image_size = IMAGE_SIZE
    num_features = FEATURE_DIM

    def __init__(self, config: SceneClassifierConfig, name: str = "rs-scene") -> None:
        super().__init__()
        if len(config.classes) < 2:
            raise ValueError("a scene classifier needs at least two classes")
        self.config, self.name, self.classes = config, name, list(config.classes)
        self.trunk = EfficientNetLite0Trunk(config.tuned_blocks)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(FEATURE_DIM, len(self.classes))

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return resize_center_crop(images, self.image_size)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled ``(B, 1280)`` features of the fine-tuned network."""
        return self.trunk(self.preprocess(images))

    def classify_features(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features → logits ``(B, num_classes)``."""
        return self.fc(self.dropout(features))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classify_features(self.features(images))

    def saved_state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"trunk.{k}": v for k, v in self.trunk.tuned_state_dict().items()}
        state.update({f"fc.{k}": v for k, v in self.fc.state_dict().items()})
        return state
