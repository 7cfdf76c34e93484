"""The FID Inception-v3 network (pytorch-fid / torch-fidelity), written in plain torch.

This is the TensorFlow Inception graph of 2015-12-05 as ported to PyTorch by pytorch-fid
(torchvision ``Inception3`` layout, 1008 classes, no auxiliary head, with the FID-specific
pooling of ``Mixed_5b``..``Mixed_7c``). Its 2048-d "pool3" features are what the standard FID
is computed on; its 1008 logits are what the Inception Score uses.

Weights: they are **not shipped with rsgen and cannot be downloaded here** (rsgen runs offline).
Get the file ``pt_inception-2015-12-05-6726825d.pth`` from pytorch-fid's GitHub release
(https://github.com/mseitzer/pytorch-fid/releases, tag ``fid_weights``) on a connected machine,
copy it over and pass its path to :meth:`InceptionV3FID.from_file` (a ``.safetensors`` copy
with the same keys also works).

Naming: the Fréchet distance between pool3 features of *these* weights is the standard "FID".
The Fréchet distance on any other feature extractor (EfficientNet, CLIP, DINOv2, random
weights...) is a different metric and must be reported under another name, e.g. ``FD[dinov2]``,
never as "FID".

Known deviations from the TensorFlow reference: like pytorch-fid, images are resized to
299x299 with torch's bilinear interpolation (``align_corners=False``, no antialiasing), not
TensorFlow's resize, so scores differ slightly from the original TF implementation (pytorch-fid's
README documents such small differences; torch-fidelity instead re-implements TF1's resize and
takes uint8 input). Images already 299x299 are passed through unchanged. Scores are therefore
comparable with pytorch-fid, and only approximately with TF FID or torch-fidelity.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rsgen.checkpoint import read_weights_file
from rsgen.errors import RsgenError
from rsgen.models.frozen import FrozenModule

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
INPUT_SIZE = 299
NUM_FEATURES = 2048
NUM_CLASSES = 1008


class BasicConv2d(nn.Module):
    """Convolution without bias, BatchNorm (eps 0.001) and ReLU."""

    def __init__(
        self, cin: int, cout: int, kernel_size: int | tuple[int, int], **kwargs: int | tuple
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    # The TF graph averages over valid pixels only at the borders.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    """Mixed_5b..5d: 1x1, 5x5, double 3x3 and average-pool branches."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool(x))], 1)


class InceptionB(nn.Module):
    """Mixed_6a: grid reduction 35x35 -> 17x17."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionC(nn.Module):
    """Mixed_6b..6e: factorised 7x7 branches and an average-pool branch."""

    def __init__(self, cin: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b7dbl = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            b7dbl = layer(b7dbl)
        return torch.cat([self.branch1x1(x), b7, b7dbl, self.branch_pool(_avg_pool(x))], 1)


class InceptionD(nn.Module):
    """Mixed_7a: grid reduction 17x17 -> 8x8."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionE(nn.Module):
    """Mixed_7b (``pool="avg"``, FIDInceptionE_1) and Mixed_7c (``pool="max"``, FIDInceptionE_2).

    The TF graph max-pools in the last block's pool branch; pytorch-fid reproduces that quirk.
    """

    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        b3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b3dbl = torch.cat([self.branch3x3dbl_3a(b3dbl), self.branch3x3dbl_3b(b3dbl)], 1)
        pooled = _avg_pool(x) if self.pool == "avg" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), b3, b3dbl, self.branch_pool(pooled)], 1)


class InceptionV3FID(FrozenModule):
    """The FID Inception-v3 (pytorch-fid weights layout), frozen once loaded.

    Inputs are float images in [-1, 1], shape (B, 3, H, W), any H and W: they are resized to
    299x299 (bilinear, ``align_corners=False``) exactly as pytorch-fid does. ``forward`` returns
    the 2048-d pool3 features (``num_features``), usable as a torchmetrics custom feature extractor.
    A freshly constructed instance has random weights; use :meth:`from_file` for the real network.
    """

    num_features: int = NUM_FEATURES
    name: str = "inception-v3"

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, pool="avg")
        self.Mixed_7c = FIDInceptionE(2048, pool="max")
        self.fc = nn.Linear(NUM_FEATURES, NUM_CLASSES)

    @classmethod
    def from_file(cls, path: str | Path) -> InceptionV3FID:
        """Load pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (or a ``.safetensors`` copy).

        Returns the network in eval mode with all parameters frozen. Raises :class:`RsgenError`
        (one line, naming the file) for a missing file, a directory, an unreadable file, or a
        state dict that does not match this architecture exactly.
        """
        net = cls()
        net.load_state_dict(_checked_state(net, read_weights_file(path), path), strict=True)
        return net.freeze()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 2048) pool3 features (non-negative) of images in [-1, 1]."""
        x = self._trunk(_resize(images))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1008) class logits (for the Inception Score; softmax them yourself)."""
        return self.fc(self.features(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`features`."""
        return self.features(images)

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b):
            x = block(x)
        for block in (self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b):
            x = block(x)
        return self.Mixed_7c(x)


def _resize(images: torch.Tensor) -> torch.Tensor:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"expected float images in [-1, 1], got dtype {images.dtype}")
    if images.shape[-2:] == (INPUT_SIZE, INPUT_SIZE):
        return images  # bilinear resize to the same size is the identity
    # Bilinear interpolation is affine, so resizing in [-1, 1] equals pytorch-fid's resize in
    # [0, 1] followed by 2x - 1 (up to float rounding).
    return F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)


def _checked_state(net: nn.Module, state: dict[str, object], path: str | Path) -> dict[str, torch.Tensor]:
    """``state`` checked key by key against ``net``; ``num_batches_tracked`` may be absent or extra."""
    expected = net.state_dict()
    extra = [k for k in state if k not in expected and not k.endswith("num_batches_tracked")]
    if extra:
        raise RsgenError(f"not the FID Inception-v3 weights: unexpected key {extra[0]}", path)
    checked: dict[str, torch.Tensor] = {}
    for key, own in expected.items():
        value = state.get(key)
        if value is None and key.endswith("num_batches_tracked"):
            value = own
        if value is None:
            raise RsgenError(f"not the FID Inception-v3 weights: missing key {key}", path)
        if not isinstance(value, torch.Tensor) or value.shape != own.shape:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise RsgenError(
                f"not the FID Inception-v3 weights: {key} has shape {got}, expected {tuple(own.shape)}", path
            )
        if value.is_floating_point() != own.is_floating_point():
            raise RsgenError(f"not the FID Inception-v3 weights: {key} has dtype {value.dtype}", path)
        checked[key] = value
    return checked
