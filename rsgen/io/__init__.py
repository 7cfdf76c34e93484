"""Raster input/output and tiled model inference (see ``docs/raster-io.md``)."""

from rsgen.io.raster import (
    IMAGE_SUFFIXES,
    RasterInfo,
    list_images,
    read_raster_info,
    read_rgb_uint8,
    write_rgb_uint8,
)
from rsgen.io.tiling import TileError, tiled_upscale, upscale_array, upscale_raster

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
