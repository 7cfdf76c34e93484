"""PSNR/SSIM against analytic values and independent maintained implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from torchmetrics.functional.image import peak_signal_noise_ratio as tm_psnr
from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

from rsgen.metrics import psnr, rgb_to_y_bt601, ssim

TOL = 1e-4


def _textured(seed: int, shape: tuple[int, ...] = (40, 48, 3)) -> np.ndarray:
    """A smooth-plus-noise uint8 image, so that SSIM is far from both 0 and 1."""
    rng = np.random.default_rng(seed)
    base = gaussian_filter(rng.uniform(0, 255, shape), sigma=(2, 2, 0)[: len(shape)])
    base = (base - base.min()) / (base.max() - base.min()) * 220 + 15
    return np.clip(base + rng.normal(0, 6, shape), 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """(sr, hr): a reference image and a blurred, noisy version of it."""
    hr = _textured(0)
    rng = np.random.default_rng(1)
    sr = gaussian_filter(hr.astype(np.float64), sigma=(1, 1, 0)) + rng.normal(0, 4, hr.shape)
    return np.clip(sr, 0, 255).round().astype(np.uint8), hr


def _nchw(img: np.ndarray) -> torch.Tensor:
    """float64 NCHW tensor from an HxWxC or HxW array."""
    arr = img if img.ndim == 3 else img[..., None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float64))[None]


def _tm_ssim_valid(sr: np.ndarray, hr: np.ndarray) -> float:
    """torchmetrics SSIM averaged over the pixels whose 11x11 window lies inside the image.

    torchmetrics reflect-pads by 5 px and averages the SSIM map over the whole image,
    padding included; scikit-image (and BasicSR) average only the valid interior.
    Interior values do not depend on the padding, so they must agree exactly there.
    """
    _, ssim_map = tm_ssim(
        _nchw(sr),
        _nchw(hr),
        gaussian_kernel=True,
        sigma=1.5,
        kernel_size=11,
        data_range=255.0,
        k1=0.01,
        k2=0.03,
        return_full_image=True,
    )
    return float(ssim_map[..., 5:-5, 5:-5].mean())


def _crop(img: np.ndarray, border: int) -> np.ndarray:
    return img[border:-border, border:-border] if border else img


# --- analytic values ----------------------------------------------------------------


def test_identical_images_give_infinite_psnr_and_unit_ssim() -> None:
    img = _textured(3)
    assert psnr(img, img) == math.inf
    assert psnr(img, img, crop_border=2, y_channel=True) == math.inf
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    assert ssim(img, img, crop_border=2, y_channel=True) == pytest.approx(1.0, abs=1e-12)


def test_constant_offset_gives_analytic_psnr() -> None:
    hr = np.random.default_rng(4).integers(0, 200, (24, 20, 3), dtype=np.uint8)
    sr = hr + np.uint8(10)
    assert psnr(sr, hr) == pytest.approx(10 * math.log10(255**2 / 10**2), abs=1e-10)
    # On Y the offset is scaled by the sum of the BT.601 weights: 219/255.
    y_offset = 10 * (65.481 + 128.553 + 24.966) / 255
    assert psnr(sr, hr, y_channel=True) == pytest.approx(10 * math.log10(255**2 / y_offset**2), abs=1e-9)


def test_crop_border_ignores_border_pixels() -> None:
    hr = _textured(5)
    sr = hr.copy()
    sr[:3] = 0
    sr[:, -3:] = 255
    assert math.isfinite(psnr(sr, hr, crop_border=2))
    assert psnr(sr, hr, crop_border=3) == math.inf
    assert ssim(sr, hr, crop_border=3) == pytest.approx(1.0, abs=1e-12)


def test_y_conversion_known_values_and_skimage() -> None:
    assert rgb_to_y_bt601(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16.0)
    assert rgb_to_y_bt601(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235.0)
    img = _textured(6)
    y = rgb_to_y_bt601(img)
    assert y.dtype == np.float64 and y.shape == img.shape[:2]
    np.testing.assert_allclose(y, rgb2ycbcr(img)[..., 0], atol=1e-9)


# --- agreement with independent implementations ----------------------------------------


@pytest.mark.parametrize("crop_border", [0, 4])
def test_psnr_matches_torchmetrics_and_skimage(pair, crop_border: int) -> None:
    sr, hr = pair
    a, b = _crop(sr, crop_border), _crop(hr, crop_border)
    ours = psnr(sr, hr, crop_border=crop_border)
    assert ours == pytest.approx(float(tm_psnr(_nchw(a), _nchw(b), data_range=255.0)), abs=TOL)
    assert ours == pytest.approx(sk_psnr(b, a, data_range=255), abs=TOL)
    ya, yb = rgb2ycbcr(a)[..., 0], rgb2ycbcr(b)[..., 0]
    ours_y = psnr(sr, hr, crop_border=crop_border, y_channel=True)
    assert ours_y == pytest.approx(float(tm_psnr(_nchw(ya), _nchw(yb), data_range=255.0)), abs=TOL)


@pytest.mark.parametrize("crop_border", [0, 4])
def test_ssim_matches_torchmetrics_on_valid_region(pair, crop_border: int) -> None:
    sr, hr = pair
    a, b = _crop(sr, crop_border), _crop(hr, crop_border)
    ours = ssim(sr, hr, crop_border=crop_border)
    assert 0.3 < ours < 0.99
    assert ours == pytest.approx(_tm_ssim_valid(a, b), abs=TOL)
    ya, yb = rgb2ycbcr(a)[..., 0], rgb2ycbcr(b)[..., 0]
    assert ssim(sr, hr, crop_border=crop_border, y_channel=True) == pytest.approx(
        _tm_ssim_valid(ya, yb), abs=TOL
    )


def test_ssim_rgb_is_mean_of_channel_ssims(pair) -> None:
    sr, hr = pair
    per_channel = [ssim(sr[..., c], hr[..., c]) for c in range(3)]
    assert ssim(sr, hr) == pytest.approx(float(np.mean(per_channel)), abs=1e-12)


def test_float_input_on_255_scale_equals_uint8(pair) -> None:
    sr, hr = pair
    assert psnr(sr.astype(np.float32), hr.astype(np.float64)) == pytest.approx(psnr(sr, hr), abs=1e-9)
    assert ssim(sr.astype(np.float32), hr.astype(np.float64)) == pytest.approx(ssim(sr, hr), abs=1e-9)


# --- validation -------------------------------------------------------------------------


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(np.zeros((20, 20, 3), np.uint8), np.zeros((20, 21, 3), np.uint8))
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20), np.uint8))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((20, 20, 4), np.uint8), "HxWx3"),
        (np.full((20, 20, 3), 1.5 * 255), "within 0..255"),
        (np.full((20, 20, 3), np.nan), "finite"),
        (np.zeros((20, 20, 3), np.int64), "dtype"),
    ],
)
def test_bad_inputs_raise(bad: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        psnr(bad, bad)


def test_crop_and_size_limits() -> None:
    img = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(ValueError, match="crop_border"):
        psnr(img, img, crop_border=-1)
    with pytest.raises(ValueError, match="leaves nothing"):
        psnr(img, img, crop_border=10)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(img, img, crop_border=5)
    with pytest.raises(ValueError, match="y_channel"):
        psnr(img[..., 0], img[..., 0], y_channel=True)
