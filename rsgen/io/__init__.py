"""Raster input/output and tiled model inference (see ``docs/raster-io.md``).

``read`` opens and validates rasters, ``write`` writes them atomically, ``rgb`` is the
8-bit RGB view of both; ``tiling`` runs a model tile by tile with blending, ``bands``
is the band/value/nodata policy of upscaling and ``upscale`` ties them into
:func:`upscale_raster`.
"""

from rsgen.io.read import IMAGE_SUFFIXES, RasterInfo, list_images, read_raster_info
from rsgen.io.rgb import read_rgb_uint8, write_rgb_uint8

_TILING = ("TileError", "tiled_upscale", "upscale_array")


def __getattr__(name: str):
    # Tiling needs torch; importing it lazily keeps file validation (and its errors) fast.
    if name in _TILING:
        from rsgen.io import tiling

        return getattr(tiling, name)
    if name == "upscale_raster":
        from rsgen.io import upscale

        return upscale.upscale_raster
    raise AttributeError(name)


__all__ = [
    "IMAGE_SUFFIXES",
    "RasterInfo",
    "TileError",
    "list_images",
    "read_raster_info",
    "read_rgb_uint8",
    "tiled_upscale",
    "upscale_array",
    "upscale_raster",
    "write_rgb_uint8",
]
