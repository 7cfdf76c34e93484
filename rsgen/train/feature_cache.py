"""Cached EfficientNet-Lite0 feature maps of augmented image views.

The image towers of ``rs-clip`` and ``rs-scene`` keep the ImageNet weights of EfficientNet-Lite0
up to MBConv block ``CACHE_BLOCK`` and train only what follows. On a 2-core CPU the frozen part
costs ~95 % of a forward pass, so it runs once per (image, augmented view) and its output map
(192 x 7 x 7, fp16) is stored; training then draws a random cached view of each image per step.
View 0 is the plain image (evaluation); views 1.. are random augmentations: a resized crop
covering 50–100 % of the image, one of the 8 flips/rotations (aerial images have no "up") and a
mild brightness/contrast change (±10 %); :class:`Augmentation` holds the crop scale range and the
jitter strength (a task's ``data.crop_scale`` and ``data.jitter``).

Files live in ``$RSGEN_CACHE`` (default ``~/.cache/rsgen``) under a key derived from the image
list, the view, the seed, the augmentation when it is not the default one, and
:data:`CACHE_VERSION`, one safetensors file per view; they are rebuilt when missing and never
needed for inference.

It lives in ``rsgen.train`` (not ``rsgen.data``) because it runs a model; only the training tasks
use it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from rsgen.data.images import center_square, image_to_tensor
from rsgen.errors import RsgenError
from rsgen.files import atomic_file, cache_root
from rsgen.io import read_rgb_uint8
from rsgen.progress import progress_bar

CACHE_BLOCK = 12
CACHE_VERSION = 1
CROP_SCALE = (0.5, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
JITTER = 0.1


@dataclass(frozen=True)
class Augmentation:
    """How augmented views are drawn: the crop's share of the image area and the largest
    brightness/contrast change. The default is what ``rs-clip`` and ``rs-scene`` trained on."""

    crop_scale: tuple[float, float] = CROP_SCALE
    jitter: float = JITTER

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> Augmentation:
        """From a config's ``data`` section (``crop_scale: [lo, hi]``, ``jitter``); absent keys
        keep the default."""
        scale = data.get("crop_scale", CROP_SCALE)
        try:
            low, high = (float(v) for v in scale)
        except (TypeError, ValueError):
            low = high = -1.0
        if not 0.0 < low <= high <= 1.0:
            raise RsgenError(f"data.crop_scale must be [low, high] with 0 < low <= high <= 1, got {scale!r}")
        try:
            jitter = float(data.get("jitter", JITTER))
        except (TypeError, ValueError):
            jitter = -1.0
        if not 0.0 <= jitter < 1.0:
            raise RsgenError(f"data.jitter must be a number in [0, 1), got {data.get('jitter')!r}")
        return cls((low, high), jitter)

    def cache_key(self) -> list[Any]:
        """What goes into a cache file's key: nothing for the default, so its files keep their names."""
        return [] if self == Augmentation() else [list(self.crop_scale), self.jitter]


DEFAULT_AUGMENTATION = Augmentation()


def augmented_view(
    image: np.ndarray, size: int, rng: np.random.Generator, augment: Augmentation = DEFAULT_AUGMENTATION
) -> torch.Tensor:
    """A random crop + flip/rotation + brightness/contrast change of ``image``, in [-1, 1]."""
    height, width = image.shape[:2]
    area = height * width * rng.uniform(*augment.crop_scale)
    ratio = float(np.exp(rng.uniform(np.log(CROP_RATIO[0]), np.log(CROP_RATIO[1]))))
    crop_w = int(min(width, round(np.sqrt(area * ratio))))
    crop_h = int(min(height, round(np.sqrt(area / ratio))))
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    crop = image[top : top + crop_h, left : left + crop_w]
    crop = np.rot90(crop, k=int(rng.integers(4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    # Squashed to a square like torchvision's RandomResizedCrop (the aspect jitter is intended).
    tensor = image_to_tensor(Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.BICUBIC))
    contrast = 1.0 + rng.uniform(-augment.jitter, augment.jitter)
    brightness = rng.uniform(-augment.jitter, augment.jitter)
    mean = tensor.mean()
    return ((tensor - mean) * contrast + mean + brightness).clamp(-1.0, 1.0)


def view_batch(
    paths: Sequence[Path], view: int, seed: int, size: int, augment: Augmentation = DEFAULT_AUGMENTATION
) -> torch.Tensor:
    """View ``view`` of every image in ``paths``: the plain image for 0, else an augmentation
    drawn from a generator seeded by (seed, view, image name)."""
    tensors = []
    for path in paths:
        image = read_rgb_uint8(path)
        if view == 0:
            tensors.append(image_to_tensor(center_square(image, size)))
        else:
            key = int.from_bytes(hashlib.sha1(Path(path).name.encode()).digest()[:4], "little")
            tensors.append(augmented_view(image, size, np.random.default_rng([seed, view, key]), augment))
    return torch.stack(tensors)


def _cache_file(
    paths: Sequence[Path], view: int, seed: int, augment: Augmentation = DEFAULT_AUGMENTATION
) -> Path:
    key = [CACHE_VERSION, CACHE_BLOCK, view, seed if view else 0, [Path(p).name for p in paths]]
    if view:  # view 0, the plain image, is the same for every seed and augmentation
        key += augment.cache_key()
    digest = hashlib.sha1(json.dumps(key).encode()).hexdigest()[:16]
    return cache_root() / "features" / f"effnet-lite0-b{CACHE_BLOCK}-{digest}-view{view}.safetensors"


def cached_feature_maps(
    paths: Sequence[Path],
    views: int,
    seed: int = 0,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    progress: bool = True,
    augment: Augmentation = DEFAULT_AUGMENTATION,
) -> torch.Tensor:
    """Block-``CACHE_BLOCK`` feature maps ``(views, N, C, 7, 7)`` fp16 of ``views`` views of every
    image, computed on first use and read from the cache afterwards."""
    return torch.stack(
        [cached_view(paths, v, seed, batch_size, device, progress, augment) for v in range(views)]
    )


@torch.no_grad()
def cached_view(
    paths: Sequence[Path],
    view: int,
    seed: int = 0,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    progress: bool = True,
    augment: Augmentation = DEFAULT_AUGMENTATION,
) -> torch.Tensor:
    """Block-``CACHE_BLOCK`` feature maps ``(N, C, 7, 7)`` fp16 of one view of every image."""
    from rsgen.models.efficientnet_lite0 import IMAGE_SIZE, EfficientNetLite0Trunk

    path = _cache_file(paths, view, seed, augment)
    if path.is_file():
        return load_file(str(path))["features"]
    trunk = EfficientNetLite0Trunk(tuned_blocks=16 - CACHE_BLOCK).to(device)
    chunks = []
    starts = range(0, len(paths), batch_size)
    for start in progress_bar(starts, desc=f"features view {view}", enabled=progress):
        images = view_batch(paths[start : start + batch_size], view, seed, IMAGE_SIZE, augment).to(device)
        chunks.append(trunk.frozen_features(images).to("cpu", torch.float16))
    features = torch.cat(chunks)
    _save_atomic(path, features)
    return features


@torch.no_grad()
def derived_features(
    paths: Sequence[Path],
    views: int,
    seed: int,
    name: str,
    transform: Callable[[torch.Tensor], torch.Tensor],
    chunk: int = 256,
    progress: bool = True,
    augment: Augmentation = DEFAULT_AUGMENTATION,
) -> torch.Tensor:
    """``transform`` (e.g. further frozen blocks) applied to every cached view, itself cached
    under ``name``: ``(views, N, ...)`` fp16."""
    per_view = []
    for view in range(views):
        base = _cache_file(paths, view, seed, augment)
        path = base.with_name(base.name.replace(".safetensors", f"-{name}.safetensors"))
        if path.is_file():
            per_view.append(load_file(str(path))["features"])
            continue
        maps = cached_view(paths, view, seed, progress=progress, augment=augment)
        parts = [transform(part.float()).to("cpu", torch.float16) for part in maps.split(chunk)]
        features = torch.cat(parts)
        _save_atomic(path, features)
        per_view.append(features)
    return torch.stack(per_view)


def _save_atomic(path: Path, features: torch.Tensor) -> None:
    with atomic_file(path) as tmp:
        save_file({"features": features.contiguous()}, str(tmp))
