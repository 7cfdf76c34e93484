"""PSNR and SSIM as super-resolution papers report them (the BasicSR convention).

* Images are 8-bit: uint8 arrays, or floats on the same 0..255 scale; data range 255.
* ``crop_border`` pixels are removed from every side before measuring (SR evaluation
  uses ``crop_border=scale``).
* ``y_channel=True`` measures on the BT.601 luma Y of MATLAB's ``rgb2ycbcr``
  (16..235, unrounded float), see :func:`rgb_to_y_bt601`.
* SSIM is Wang et al. (2004): 11x11 Gaussian window with sigma 1.5, K1=0.01, K2=0.03,
  population (not sample) covariances, averaged over the pixels whose window lies
  fully inside the image, then over the RGB channels. The computation is delegated
  to :func:`skimage.metrics.structural_similarity`.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

DATA_RANGE = 255.0
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11  # skimage derives it from sigma: 2 * int(3.5 * 1.5 + 0.5) + 1

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64) / 255.0
_Y_OFFSET = 16.0


def rgb_to_y_bt601(img: np.ndarray) -> np.ndarray:
    """Return the BT.601 luma of an RGB image on the 0..255 scale as float64 HxW.

    Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 for R, G, B in 0..255, the
    convention of MATLAB's ``rgb2ycbcr`` (and of BasicSR's ``test_y_channel``).
    The result is not rounded.
    """
    rgb = np.asarray(img)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {rgb.shape}")
    return rgb.astype(np.float64) @ _Y_WEIGHTS + _Y_OFFSET


def psnr(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio in dB between ``sr`` and the reference ``hr``.

    Both images are HxWx3 RGB (or HxW) uint8 arrays, or floats on the 0..255 scale,
    with the same shape. Returns ``float('inf')`` for identical images.
    """
    a, b = _prepare(sr, hr, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(DATA_RANGE**2 / mse)


def ssim(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0, y_channel: bool = False) -> float:
    """Structural similarity (Wang et al. 2004) between ``sr`` and the reference ``hr``.

    Same inputs as :func:`psnr`. After cropping, both sides must be at least 11 px
    (the Gaussian window). RGB images give the mean of the per-channel SSIMs.
    """
    a, b = _prepare(sr, hr, crop_border, y_channel)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels after cropping, got {a.shape[:2]}"
        )
    value = structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=SSIM_SIGMA,
        use_sample_covariance=False,
        data_range=DATA_RANGE,
        channel_axis=-1 if a.ndim == 3 else None,
    )
    return float(value)


def masked_psnr(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """PSNR over the pixels where ``mask`` (bool HxW) is set; ``inf`` when they are identical."""
    a, b = _prepare(image, reference, 0, False)
    if not mask.any():
        raise ValueError("the mask selects no pixel")
    mse = float(np.mean((a[mask] - b[mask]) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(DATA_RANGE**2 / mse)


def masked_ssim(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """SSIM (as :func:`ssim`) averaged over the pixels where ``mask`` is set: the mean of the
    local SSIM map there (windows near the mask's edge see the other side too)."""
    a, b = _prepare(image, reference, 0, False)
    if not mask.any():
        raise ValueError("the mask selects no pixel")
    _, local = structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=SSIM_SIGMA,
        use_sample_covariance=False,
        data_range=DATA_RANGE,
        channel_axis=-1 if a.ndim == 3 else None,
        full=True,
    )
    return float(local[mask].mean())


def _prepare(
    sr: np.ndarray, hr: np.ndarray, crop_border: int, y_channel: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Validate, crop and (optionally) convert both images to float64 arrays."""
    a = _as_float_image(sr, "sr")
    b = _as_float_image(hr, "hr")
    if a.shape != b.shape:
        raise ValueError(f"sr and hr shapes differ: {a.shape} vs {b.shape}")
    a = _crop(a, crop_border)
    b = _crop(b, crop_border)
    if y_channel:
        if a.ndim != 3:
            raise ValueError("y_channel=True needs HxWx3 RGB images")
        a, b = rgb_to_y_bt601(a), rgb_to_y_bt601(b)
    return a, b


def _as_float_image(img: np.ndarray, name: str) -> np.ndarray:
    """Check that ``img`` is an HxW or HxWx3 image on the 0..255 scale; return float64."""
    arr = np.asarray(img)
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3)):
        raise ValueError(f"{name}: expected an HxWx3 or HxW image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float64)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name}: expected uint8 or float pixels, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.size and not (np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= DATA_RANGE):
        raise ValueError(f"{name}: float pixels must be finite and within 0..255")
    return arr


def _crop(img: np.ndarray, border: int) -> np.ndarray:
    """Remove ``border`` pixels from each side of ``img``."""
    if border < 0:
        raise ValueError(f"crop_border must be >= 0, got {border}")
    if border == 0:
        return img
    height, width = img.shape[:2]
    if height <= 2 * border or width <= 2 * border:
        raise ValueError(f"crop_border={border} leaves nothing of a {height}x{width} image")
    return img[border:-border, border:-border, ...]
