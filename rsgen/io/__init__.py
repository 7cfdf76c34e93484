"""Raster input/output and tiled model inference (see ``docs/raster-io.md``)."""

from rsgen.io.raster import (
    IMAGE_SUFFIXES,
    RasterInfo,
    list_images,
    read_raster_info,
    read_rgb_uint8,
    write_rgb_uint8,
)

_TILING = ("TileError", "tiled_upscale", "upscale_array", "upscale_raster")


def __getattr__(name: str):
    # Tiling needs torch; importing it lazily keeps file validation (and its errors) fast.
    if name in _TILING:
        from rsgen.io import tiling

        return getattr(tiling, name)
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
