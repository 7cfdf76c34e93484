"""Single-image Fréchet distance (SIFID, Shaham et al., SinGAN, ICCV 2019) on EfficientNet-Lite0.

SinGAN's SIFID compares the distribution of early-layer features *within* one image: every
spatial position of a feature map is a sample. Here the layer is EfficientNet-Lite0's block 1
(24 channels at 1/4 resolution, the offline analogue of Inception's first pooling layer), so a
256 px image gives 4096 samples of a 24-d feature. 0 means the internal patch statistics of the
two images match; it says nothing about where things are (a shuffled image scores low too).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from scipy import linalg

from rsgen.data.images import image_to_tensor
from rsgen.models.feature_extractors import EfficientNetLite0Features

SIFID_BLOCK = 1


@functools.lru_cache(maxsize=1)
def _extractor() -> EfficientNetLite0Features:
    return EfficientNetLite0Features(layers=(SIFID_BLOCK,)).eval()


@torch.no_grad()
def patch_features(image: np.ndarray) -> np.ndarray:
    """The block-1 feature vectors at every position of a uint8 RGB image ``(N, 24)`` (float64)."""
    (features,) = _extractor()(image_to_tensor(image)[None])
    return features[0].flatten(1).T.double().numpy()


def sifid(real: np.ndarray, fake: np.ndarray) -> float:
    """SIFID between two uint8 RGB images (any sizes)."""
    a, b = patch_features(real), patch_features(fake)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))
