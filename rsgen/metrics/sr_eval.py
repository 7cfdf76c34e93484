"""The evaluation core behind ``rsgen eval sr``: a model against the bicubic baseline.

Each HR image is cropped to a multiple of the scale, degraded with the project's
bicubic downscale (:mod:`rsgen.data.degradation`), upscaled by the model and by
bicubic, and both results are scored with PSNR/SSIM on RGB and on Y, ignoring
``scale`` pixels on every border (the BasicSR convention, see
:mod:`rsgen.metrics.image_quality`). The command line prints the result as a table
(:mod:`rsgen.cli.tables`) or as JSON (:meth:`SREvalResult.to_dict`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rsgen.data.degradation import bicubic_downscale, bicubic_upscale, crop_to_multiple
from rsgen.errors import RsgenError
from rsgen.io import read_rgb_uint8
from rsgen.metrics.image_quality import SSIM_WINDOW, psnr, ssim
from rsgen.progress import progress_bar

UpscaleFn = Callable[[np.ndarray], np.ndarray]

_PSNR_DIGITS = 4
_SSIM_DIGITS = 6
_SECONDS_DIGITS = 6


@dataclass
class SRScore:
    """PSNR (dB) and SSIM of one image or the mean over a set, on RGB and on Y."""

    psnr_rgb: float
    ssim_rgb: float
    psnr_y: float
    ssim_y: float

    @classmethod
    def measure(cls, sr: np.ndarray, hr: np.ndarray, crop_border: int) -> SRScore:
        """Score ``sr`` against ``hr`` (uint8 HxWx3), ignoring ``crop_border`` px per side."""
        return cls(
            psnr_rgb=psnr(sr, hr, crop_border),
            ssim_rgb=ssim(sr, hr, crop_border),
            psnr_y=psnr(sr, hr, crop_border, y_channel=True),
            ssim_y=ssim(sr, hr, crop_border, y_channel=True),
        )

    @classmethod
    def mean(cls, scores: Sequence[SRScore]) -> SRScore:
        """Metric-wise arithmetic mean of ``scores`` (PSNR averaged in dB, as papers do)."""
        if not scores:
            raise ValueError("cannot average an empty list of scores")
        return cls(**{f.name: float(np.mean([getattr(s, f.name) for s in scores])) for f in fields(cls)})

    def to_dict(self) -> dict[str, float | None]:
        """Rounded, JSON-ready values; an infinite PSNR (exact reconstruction) becomes None."""
        return {
            "psnr_rgb": _json_float(self.psnr_rgb, _PSNR_DIGITS),
            "ssim_rgb": _json_float(self.ssim_rgb, _SSIM_DIGITS),
            "psnr_y": _json_float(self.psnr_y, _PSNR_DIGITS),
            "ssim_y": _json_float(self.ssim_y, _SSIM_DIGITS),
        }


@dataclass
class SREvalResult:
    """Outcome of :func:`evaluate_sr`: mean scores of the model and of bicubic.

    ``per_image`` holds one dict per image: ``path``, ``width``/``height`` of the
    cropped HR image, ``seconds`` spent in the model, and ``model``/``bicubic``
    score dicts (see :meth:`SRScore.to_dict`).
    """

    scale: int
    num_images: int
    model_name: str
    model: SRScore
    bicubic: SRScore
    seconds_per_image: float
    per_image: list[dict]

    @property
    def gain_db_rgb(self) -> float:
        """Mean RGB PSNR of the model minus that of bicubic, in dB."""
        return self.model.psnr_rgb - self.bicubic.psnr_rgb

    @property
    def gain_db_y(self) -> float:
        """Mean Y PSNR of the model minus that of bicubic, in dB."""
        return self.model.psnr_y - self.bicubic.psnr_y

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (valid with ``json.dumps(..., allow_nan=False)``).

        Floats are rounded (PSNR 4 decimals, SSIM 6, seconds 6); non-finite values,
        which only arise from a pixel-exact reconstruction (PSNR = inf), become None.
        """
        return {
            "scale": self.scale,
            "num_images": self.num_images,
            "model_name": self.model_name,
            "seconds_per_image": _json_float(self.seconds_per_image, _SECONDS_DIGITS),
            "model": self.model.to_dict(),
            "bicubic": self.bicubic.to_dict(),
            "gain_db_rgb": _json_float(self.gain_db_rgb, _PSNR_DIGITS),
            "gain_db_y": _json_float(self.gain_db_y, _PSNR_DIGITS),
            "per_image": [_per_image_json(item) for item in self.per_image],
        }


def evaluate_sr(
    hr_paths: Sequence[Path],
    scale: int,
    upscale_fn: UpscaleFn,
    model_name: str,
    progress: bool = True,
) -> SREvalResult:
    """Evaluate ``upscale_fn`` against bicubic on the HR images ``hr_paths``.

    ``upscale_fn`` receives the LR image as a uint8 HxWx3 array and must return a
    uint8 array of shape (H*scale, W*scale, 3); only this call is timed. Both the
    model and bicubic are scored with ``crop_border=scale``.

    Raises:
        RsgenError: no images, or an image that cannot be read or is too small.
        ValueError: a bad ``scale`` or a wrong output from ``upscale_fn``.
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    paths = [Path(p) for p in hr_paths]
    if not paths:
        raise RsgenError("no HR images to evaluate")
    bar = progress_bar(paths, desc=f"Evaluating {model_name} x{scale}", enabled=progress, unit="img")
    with bar:
        per_image = [_evaluate_one(path, scale, upscale_fn) for path in bar]
    return SREvalResult(
        scale=scale,
        num_images=len(paths),
        model_name=model_name,
        model=SRScore.mean([SRScore(**item["model"]) for item in per_image]),
        bicubic=SRScore.mean([SRScore(**item["bicubic"]) for item in per_image]),
        seconds_per_image=sum(item["seconds"] for item in per_image) / len(paths),
        per_image=per_image,
    )


def _evaluate_one(path: Path, scale: int, upscale_fn: UpscaleFn) -> dict[str, Any]:
    """Degrade one HR image, upscale it with the model and with bicubic, and score both."""
    hr = _load_hr(path, scale)
    lr = bicubic_downscale(hr, scale)
    bicubic_sr = np.asarray(bicubic_upscale(lr, scale))
    hr_arr = np.asarray(hr)
    model_sr, seconds = _run_model(upscale_fn, np.array(lr), hr_arr.shape, path)
    model = SRScore.measure(model_sr, hr_arr, scale)
    bicubic = SRScore.measure(bicubic_sr, hr_arr, scale)
    return _per_image_entry(path, hr, seconds, model, bicubic)


def _load_hr(path: Path, scale: int) -> Image.Image:
    """Read ``path`` as RGB and crop it to a multiple of ``scale``; RsgenError if unusable."""
    hr = crop_to_multiple(Image.fromarray(read_rgb_uint8(path)), scale)
    min_side = SSIM_WINDOW + 2 * scale
    if min(hr.size) < min_side:
        raise RsgenError(
            f"image is {hr.width}x{hr.height}; x{scale} evaluation needs at least {min_side}x{min_side}",
            path,
        )
    return hr


def _run_model(
    upscale_fn: UpscaleFn, lr: np.ndarray, hr_shape: tuple[int, ...], path: Path
) -> tuple[np.ndarray, float]:
    """Call ``upscale_fn`` on ``lr``, timing only the call, and check its output."""
    start = time.perf_counter()
    out = upscale_fn(lr)
    seconds = time.perf_counter() - start
    if not isinstance(out, np.ndarray):
        raise ValueError(f"{path}: upscale_fn returned {type(out).__name__}, expected a numpy array")
    if out.shape != hr_shape:
        raise ValueError(f"{path}: upscale_fn returned shape {out.shape}, expected {hr_shape}")
    if out.dtype != np.uint8:
        raise ValueError(f"{path}: upscale_fn returned dtype {out.dtype}, expected uint8")
    return out, seconds


def _per_image_entry(
    path: Path, hr: Image.Image, seconds: float, model: SRScore, bicubic: SRScore
) -> dict[str, Any]:
    """The raw (unrounded) record of one evaluated image."""
    return {
        "path": str(path),
        "width": hr.width,
        "height": hr.height,
        "seconds": seconds,
        "model": asdict(model),
        "bicubic": asdict(bicubic),
    }


def _per_image_json(item: dict[str, Any]) -> dict[str, Any]:
    """Round one per-image record for JSON output."""
    out = dict(item)
    out["seconds"] = _json_float(item["seconds"], _SECONDS_DIGITS)
    for key in ("model", "bicubic"):
        out[key] = SRScore(**item[key]).to_dict()
    return out


def _json_float(value: float, digits: int) -> float | None:
    """``value`` rounded to ``digits`` decimals, or None if it is not finite."""
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None
