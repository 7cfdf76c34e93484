"""The 8-bit RGB view of a raster: read any 8-bit image as (H, W, 3) uint8 and write one back.

Which bands make the RGB image: declared red/green/blue roles win; otherwise one data
band is replicated to three channels and three data bands are taken in order; alpha is
dropped.  Values are never rescaled.  Used by datasets, metrics and the demo, which
work on plain RGB images (the model-facing band policy of upscaling is in
:mod:`rsgen.io.bands`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rasterio.transform import Affine
from rasterio.windows import Window

from rsgen.errors import RsgenError
from rsgen.io.read import RasterInfo, open_raster, read_raster_info
from rsgen.io.write import OutputSpec, open_writer


def read_rgb_uint8(path: str | Path) -> np.ndarray:
    """Read an 8-bit image as an (H, W, 3) uint8 array.

    Gray images are replicated to 3 channels; alpha is dropped; for more bands the
    red/green/blue bands are used if the file declares them.  Other data types or
    layouts raise :class:`RsgenError` (this helper never rescales values).
    """
    with open_raster(path, min_size=1) as source:
        info = source.info
        if info.dtype != "uint8":
            raise RsgenError(f"expected 8-bit data, found {info.dtype}", info.path)
        bands = _rgb_band_indices(info)
        array = source.read(Window(0, 0, info.width, info.height))
    return np.ascontiguousarray(np.moveaxis(array[list(bands)], 0, -1))


def _rgb_band_indices(info: RasterInfo) -> tuple[int, int, int]:
    roles = info.colorinterp
    if all(r in roles for r in ("red", "green", "blue")):
        return roles.index("red"), roles.index("green"), roles.index("blue")
    data = [i for i, r in enumerate(roles) if r != "alpha"] if roles else list(range(info.count))
    if len(data) == 1:
        return data[0], data[0], data[0]
    if len(data) == 3:
        return data[0], data[1], data[2]
    raise RsgenError(f"{len(data)} data bands without declared red/green/blue; cannot read as RGB", info.path)


def write_rgb_uint8(path: str | Path, array: np.ndarray, like: str | Path | RasterInfo | None = None) -> None:
    """Atomically write an (H, W, 3) uint8 array as PNG/JPEG/GeoTIFF (by suffix).

    With ``like`` (a raster path or :class:`RasterInfo`), a GeoTIFF output gets its
    CRS and geotransform, with the pixel size scaled to the new size (e.g. an SR
    output written ``like`` its low-resolution input keeps the same footprint).
    """
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {array.shape} {array.dtype}")
    height, width = array.shape[:2]
    roles = ("red", "green", "blue")
    spec = OutputSpec(width=width, height=height, count=3, dtype="uint8", colorinterp=roles)
    if like is not None:
        ref = like if isinstance(like, RasterInfo) else read_raster_info(like, min_size=1)
        if ref.georeferenced:
            spec.crs = ref.crs
            spec.transform = ref.transform @ Affine.scale(ref.width / width, ref.height / height)
    with open_writer(path, spec) as writer:
        writer.write_rows(np.moveaxis(array, -1, 0))
        writer.commit()
