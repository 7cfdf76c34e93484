"""``rsgen demo``: super-resolve a real aerial scene end to end with no arguments.

The scene is the first image of ``$RSGEN_DATA/scenes`` (scikit-image's astronaut when
that folder is absent), centre-cropped and written as a georeferenced GeoTIFF. It is
degraded with the project's bicubic downscale, super-resolved as a GeoTIFF (so the
georeferencing path of :mod:`rsgen.io` is exercised), and compared with bicubic.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from PIL import Image, ImageDraw
from rasterio.crs import CRS
from rasterio.transform import Affine

from rsgen.data.degradation import bicubic_downscale, bicubic_upscale
from rsgen.data.paths import default_data_root
from rsgen.errors import RsgenError
from rsgen.io import list_images, read_raster_info, read_rgb_uint8, write_rgb_uint8
from rsgen.metrics import psnr
from rsgen.pipelines.super_resolution import SuperResolver

DEMO_CRS = "EPSG:32633"
DEMO_ORIGIN = (600000.0, 5340000.0)
DEMO_PIXEL_M = 0.6
DEMO_SIZE = 256
PANEL_LABELS = ("LR (nearest)", "bicubic", "DEGAN", "original HR")


@dataclass
class DemoScene:
    """The HR sample: ``image`` is uint8 H x W x 3; ``note`` says why a fallback was used."""

    name: str
    source: str
    image: np.ndarray
    note: str | None = None


@dataclass
class DemoResult:
    """What :func:`run_demo` produced and measured (see :meth:`to_dict`)."""

    source: str
    note: str | None
    model: str
    scale: int
    device: str
    output_dir: str
    files: dict[str, str]
    hr_size: list[int]
    lr_size: list[int]
    psnr_model: float
    psnr_bicubic: float
    sr_georeferencing: dict[str, Any]
    seconds_sr: float
    seconds_total: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (PSNR in dB rounded to 4 decimals, seconds to 3)."""
        data = asdict(self)
        for key in ("psnr_model", "psnr_bicubic"):
            data[key] = round(data[key], 4) if np.isfinite(data[key]) else None
        for key in ("seconds_sr", "seconds_total"):
            data[key] = round(data[key], 3)
        return data


def load_demo_scene(data_root: Path | None = None) -> DemoScene:
    """The first image of ``<data root>/scenes``, else scikit-image's astronaut with a note."""
    folder = (data_root or default_data_root()) / "scenes"
    if folder.is_dir():
        try:
            first = list_images(folder)[0]
        except RsgenError:
            pass
        else:
            return DemoScene(first.stem, str(first), read_rgb_uint8(first))
    from skimage.data import astronaut

    note = f"no aerial sample found in {folder}; using scikit-image's astronaut instead"
    return DemoScene("astronaut", "skimage.data.astronaut", np.ascontiguousarray(astronaut()[..., :3]), note)


def center_crop(image: np.ndarray, size: int, multiple: int) -> np.ndarray:
    """A centred crop of at most ``size`` px per side, both sides divisible by ``multiple``."""
    height, width = image.shape[:2]
    side_h = min(size, height) // multiple * multiple
    side_w = min(size, width) // multiple * multiple
    if side_h < 2 * multiple or side_w < 2 * multiple:
        raise RsgenError(f"demo image is too small ({width}x{height} px) for x{multiple}")
    top, left = (height - side_h) // 2, (width - side_w) // 2
    return np.ascontiguousarray(image[top : top + side_h, left : left + side_w])


def write_geotiff(path: Path, image: np.ndarray, transform: Affine, crs: str = DEMO_CRS) -> Path:
    """Write an RGB uint8 array as a georeferenced GeoTIFF."""
    height, width = image.shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 3,
        "dtype": "uint8",
        "crs": CRS.from_string(crs),
        "transform": transform,
        "photometric": "RGB",
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.moveaxis(image, -1, 0))
    return path


def comparison_strip(panels: list[np.ndarray], labels: tuple[str, ...] = PANEL_LABELS) -> Image.Image:
    """Panels of equal size side by side, separated by white gaps, labelled above."""
    height, width = panels[0].shape[:2]
    gap, header = 4, 16
    canvas = Image.new("RGB", (len(panels) * width + (len(panels) - 1) * gap, height + header), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (panel, label) in enumerate(zip(panels, labels, strict=True)):
        x = i * (width + gap)
        canvas.paste(Image.fromarray(panel), (x, header))
        draw.text((x + 2, 2), label, fill="black")
    return canvas


def georeferencing(path: Path) -> dict[str, Any]:
    """CRS, geotransform (GDAL order), pixel size and size of a raster file."""
    info = read_raster_info(path)
    t = info.transform
    return {
        "crs": str(info.crs) if info.crs else None,
        "transform": [t.c, t.a, t.b, t.f, t.d, t.e],
        "pixel_size": [abs(t.a), abs(t.e)],
        "width": info.width,
        "height": info.height,
    }


def run_demo(
    output_dir: str | Path = "rsgen-demo",
    model: str | Path | None = None,
    scale: int = 4,
    size: int = DEMO_SIZE,
    device: str | None = None,
    data_root: Path | None = None,
    progress: bool = False,
) -> DemoResult:
    """Run the demo and write its files into ``output_dir``.

    Files: ``hr.tif`` (the sample, EPSG:32633 at 0.6 m), ``lr.tif`` (bicubic downscale,
    pixel size x ``scale``), ``sr.tif`` (super-resolved from ``lr.tif``, pixel size
    divided by ``scale``), ``bicubic.png``, ``sr.png`` and ``comparison.png``
    (LR nearest | bicubic | DEGAN | HR). PSNR is measured against the HR crop with
    ``crop_border=scale``. ``model`` defaults to ``degan-x<scale>``.
    """
    start = time.perf_counter()
    out = Path(output_dir)
    resolver = SuperResolver.from_pretrained(model or f"degan-x{scale}", scale=scale, device=device)
    scene = load_demo_scene(data_root)
    hr = center_crop(scene.image, size, scale)
    lr = np.asarray(bicubic_downscale(Image.fromarray(hr), scale))
    hr_transform = Affine.translation(*DEMO_ORIGIN) @ Affine.scale(DEMO_PIXEL_M, -DEMO_PIXEL_M)
    files = {
        "hr": write_geotiff(out / "hr.tif", hr, hr_transform),
        "lr": write_geotiff(out / "lr.tif", lr, hr_transform @ Affine.scale(scale)),
        "sr": out / "sr.tif",
        "bicubic_png": out / "bicubic.png",
        "sr_png": out / "sr.png",
        "comparison": out / "comparison.png",
    }
    sr_start = time.perf_counter()
    resolver.upscale_file(files["lr"], files["sr"], progress=progress)
    seconds_sr = time.perf_counter() - sr_start
    sr = read_rgb_uint8(files["sr"])
    bicubic = np.asarray(bicubic_upscale(Image.fromarray(lr), scale))
    write_rgb_uint8(files["bicubic_png"], bicubic)
    write_rgb_uint8(files["sr_png"], sr)
    nearest = np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)
    write_rgb_uint8(files["comparison"], np.asarray(comparison_strip([nearest, bicubic, sr, hr])))
    return DemoResult(
        source=scene.source,
        note=scene.note,
        model=resolver.name,
        scale=scale,
        device=str(resolver.device),
        output_dir=str(out),
        files={key: str(path) for key, path in files.items()},
        hr_size=[hr.shape[1], hr.shape[0]],
        lr_size=[lr.shape[1], lr.shape[0]],
        psnr_model=psnr(sr, hr, crop_border=scale),
        psnr_bicubic=psnr(bicubic, hr, crop_border=scale),
        sr_georeferencing=georeferencing(files["sr"]),
        seconds_sr=seconds_sr,
        seconds_total=time.perf_counter() - start,
    )
