"""Raster reading: validated opening of PNG/JPEG/(Geo)TIFF files for windowed reads.

Each file is sniffed by its first bytes, not its suffix.  TIFF/GeoTIFF is read with
rasterio by windows, so a scene larger than memory works.  PNG and JPEG are decoded
with Pillow, whose ``load()`` raises on truncated data (GDAL only warns); 16-bit
RGB(A) PNGs, which Pillow would reduce to 8 bits, are checked with Pillow and then
read with rasterio.

Also here: :class:`RasterInfo` (what rsgen knows about a raster, shared by readers
and writers) and :func:`list_images` (the image files of a path).

Every user mistake (missing file, not an image, truncated file, image too small,
unsupported band layout or data type) raises :class:`rsgen.errors.RsgenError`
naming the file.
"""

from __future__ import annotations

import contextlib
import math
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from PIL import Image, ImageFile, ImageOps
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window

from rsgen.errors import RsgenError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
"""Suffixes (lower case) that :func:`list_images` and the writers accept."""

SUPPORTED_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


@dataclass(frozen=True)
class RasterInfo:
    """What rsgen knows about a raster file.

    ``transform`` is the identity when the file is not georeferenced (rasterio's
    convention); ``colorinterp`` holds lower-case band roles such as ``"red"``,
    ``"gray"``, ``"alpha"`` or ``"undefined"``; ``backend`` is ``"rasterio"`` or
    ``"pillow"``, the library that reads the pixels.
    """

    path: Path
    width: int
    height: int
    count: int
    dtype: str
    crs: CRS | None = None
    transform: Affine = field(default_factory=Affine.identity)
    nodata: float | None = None
    colorinterp: tuple[str, ...] = ()
    backend: str = "rasterio"

    @property
    def georeferenced(self) -> bool:
        """True when the file has a CRS or a non-identity geotransform."""
        return self.crs is not None or self.transform != Affine.identity()


# --------------------------------------------------------------------------- sources


class RasterSource:
    """An open raster: ``info`` plus windowed reads in the file's own data type."""

    info: RasterInfo
    metadata: dict[str, Any]

    def read(self, window: Window) -> np.ndarray:
        """Return all bands of ``window`` as an array (count, rows, cols)."""
        raise NotImplementedError

    def read_decimated(self, max_side: int = 1024) -> np.ndarray:
        """Return a nearest-neighbour decimated copy (count, h, w) with sides <= ``max_side``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _decimation_step(info: RasterInfo, max_side: int) -> int:
    """The pixel step of a decimated read whose sides are at most ``max_side``."""
    return max(1, math.ceil(max(info.width, info.height) / max_side))


class _ArraySource(RasterSource):
    """A PNG/JPEG decoded by Pillow, held in memory (these formats cannot be read by windows)."""

    def __init__(self, info: RasterInfo, array: np.ndarray) -> None:
        self.info = info
        self.metadata = {}
        self._array = array

    def read(self, window: Window) -> np.ndarray:
        (r0, r1), (c0, c1) = window.toranges()
        return self._array[:, r0:r1, c0:c1].copy()

    def read_decimated(self, max_side: int = 1024) -> np.ndarray:
        step = _decimation_step(self.info, max_side)
        return self._array[:, ::step, ::step]


class _RasterioSource(RasterSource):
    """A raster read by windows through rasterio/GDAL."""

    def __init__(self, info: RasterInfo, dataset: rasterio.io.DatasetReader) -> None:
        self.info = info
        self._ds = dataset
        self.metadata = _dataset_metadata(dataset)

    def read(self, window: Window) -> np.ndarray:
        (r0, r1), (c0, c1) = window.toranges()
        with gdal_errors(self.info.path, f"reading rows {r0}:{r1}, cols {c0}:{c1}"):
            return self._ds.read(window=window)

    def read_decimated(self, max_side: int = 1024) -> np.ndarray:
        step = _decimation_step(self.info, max_side)
        shape = (self.info.count, math.ceil(self.info.height / step), math.ceil(self.info.width / step))
        with gdal_errors(self.info.path, "reading a decimated overview"):
            return self._ds.read(out_shape=shape, resampling=Resampling.nearest)

    def close(self) -> None:
        self._ds.close()


@contextlib.contextmanager
def gdal_errors(path: Path, action: str) -> Iterator[None]:
    """Turn rasterio/GDAL errors into an RsgenError naming ``path`` and ``action``."""
    try:
        yield
    except RasterioError as exc:
        detail = exc.__cause__ or exc
        raise RsgenError(f"{action} failed (corrupt or truncated file?): {detail}", path) from exc


def _dataset_metadata(ds: rasterio.io.DatasetReader) -> dict[str, Any]:
    """Cheap-to-copy metadata: tags, band tags/descriptions/units, scales, offsets, GCPs."""
    meta: dict[str, Any] = {
        "tags": ds.tags(),
        "band_tags": [
            {k: v for k, v in ds.tags(b).items() if not k.startswith("STATISTICS_")} for b in ds.indexes
        ],
        "descriptions": list(ds.descriptions),
        "units": list(ds.units),
        "scales": list(ds.scales),
        "offsets": list(ds.offsets),
        "gcps": None,
    }
    gcps, gcp_crs = ds.gcps
    if gcps:
        meta["gcps"] = (gcps, gcp_crs)
    return meta


def _sniff(path: Path) -> str:
    """Return ``"png"``, ``"jpeg"`` or ``"tiff"`` from the file's first bytes."""
    if not path.exists():
        raise RsgenError("file not found", path)
    if path.is_dir():
        raise RsgenError("is a folder, not an image file", path)
    if not path.is_file():  # a named pipe, socket or device would block or never end
        raise RsgenError("not a regular file (a pipe, socket or device?)", path)
    try:
        with path.open("rb") as fh:
            head = fh.read(32)
    except OSError as exc:
        raise RsgenError(f"cannot read file: {exc.strerror or exc}", path) from exc
    if not head:
        raise RsgenError("file is empty (0 bytes)", path)
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    if head[:4] in _TIFF_MAGICS:
        return "tiff"
    raise RsgenError("not a PNG, JPEG or TIFF image (unrecognised file contents)", path)


def _png_is_16bit_color(path: Path) -> bool:
    """True for a 16-bit RGB or RGBA PNG (IHDR bit depth 16, colour type 2 or 6)."""
    with path.open("rb") as fh:
        head = fh.read(26)
    return len(head) == 26 and head[24] == 16 and head[25] in (2, 6)


@contextlib.contextmanager
def _strict_truncation() -> Iterator[None]:
    """Make Pillow raise on truncated files even if another library relaxed it globally."""
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


_PILLOW_CONVERT = {"1": "L", "La": "LA", "RGBa": "RGBA", "RGBX": "RGB", "PA": "RGBA"}
_PILLOW_ROLES = {
    "L": ("gray",),
    "LA": ("gray", "alpha"),
    "RGB": ("red", "green", "blue"),
    "RGBA": ("red", "green", "blue", "alpha"),
    "I;16": ("gray",),
    "I;16L": ("gray",),
    "I;16B": ("gray",),
    "I": ("gray",),
    "F": ("gray",),
}


def _pillow_mode(image: Image.Image) -> Image.Image:
    """Convert exotic Pillow modes (palette, bilevel, CMYK, ...) to L/LA/RGB/RGBA."""
    if image.mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in _PILLOW_CONVERT:
        return image.convert(_PILLOW_CONVERT[image.mode])
    if image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB")
    return image


def _decode_pillow(path: Path, kind: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Fully decode a PNG/JPEG with Pillow; return (bands, rows, cols) and band roles."""
    try:
        with _strict_truncation(), warnings.catch_warnings(), Image.open(path) as image:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
            # Phones and drones store the camera's rotation as EXIF orientation: apply it, so
            # the pixels are the picture every viewer shows (the tag is not written back).
            image = _pillow_mode(ImageOps.exif_transpose(image))
            if image.mode not in _PILLOW_ROLES:
                raise RsgenError(f"unsupported {kind.upper()} pixel mode {image.mode!r}", path)
            array = np.asarray(image)
            mode = image.mode
    except Image.DecompressionBombError as exc:
        raise RsgenError(
            f"image is too large to decode as {kind.upper()}; convert it to GeoTIFF "
            "(e.g. gdal_translate in.png out.tif), which is read by windows",
            path,
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise RsgenError(f"cannot decode {kind.upper()} image (truncated or corrupt?): {exc}", path) from exc
    if mode.startswith("I;16") or (mode == "I" and kind == "png"):
        array = array.astype(np.uint16)
    array = array[np.newaxis] if array.ndim == 2 else np.moveaxis(array, -1, 0)
    return np.ascontiguousarray(array), _PILLOW_ROLES[mode]


def _open_with_rasterio(path: Path) -> rasterio.io.DatasetReader:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioError as exc:
        raise RsgenError(f"cannot open as a raster (corrupt or truncated file?): {exc}", path) from exc


def _check_layout(info: RasterInfo, min_size: int) -> None:
    """Raise RsgenError for an empty/too small image, unsupported dtype or band layout."""
    if info.width == 0 or info.height == 0:
        raise RsgenError(f"image is empty ({info.width}x{info.height} px)", info.path)
    if info.width < min_size or info.height < min_size:
        raise RsgenError(
            f"image is {info.width}x{info.height} px; at least {min_size}x{min_size} px is needed", info.path
        )
    if info.count == 0:
        raise RsgenError("raster has no bands", info.path)
    if info.dtype not in SUPPORTED_DTYPES:
        raise RsgenError(
            f"unsupported data type {info.dtype} (supported: {', '.join(SUPPORTED_DTYPES)})", info.path
        )
    if "palette" in info.colorinterp:
        raise RsgenError(
            "colour-mapped (palette) rasters are not supported; expand them to RGB first "
            "(e.g. gdal_translate -expand rgb)",
            info.path,
        )
    if all(role == "alpha" for role in info.colorinterp):
        raise RsgenError("raster has only alpha bands; there is nothing to upscale", info.path)


def _rasterio_info(path: Path, ds: rasterio.io.DatasetReader) -> RasterInfo:
    if len(set(ds.dtypes)) > 1:
        raise RsgenError(f"bands have different data types {ds.dtypes}; not supported", path)
    return RasterInfo(
        path=path,
        width=ds.width,
        height=ds.height,
        count=ds.count,
        dtype=ds.dtypes[0] if ds.count else "uint8",
        crs=ds.crs,
        transform=ds.transform,
        nodata=ds.nodata,
        colorinterp=tuple(ci.name for ci in ds.colorinterp),
        backend="rasterio",
    )


def open_raster(path: str | Path, min_size: int = 2) -> RasterSource:
    """Open and validate a raster for reading; the caller closes it (or uses ``with``).

    PNG/JPEG are decoded completely here (that is how truncation is detected);
    TIFF is opened lazily and its last pixel is read to catch truncated files early.
    """
    path = Path(path)
    kind = _sniff(path)
    if kind == "tiff" or (kind == "png" and _png_is_16bit_color(path)):
        if kind == "png":
            _decode_pillow(path, kind)  # integrity check only: GDAL merely warns on truncated PNGs
        ds = _open_with_rasterio(path)
        try:
            info = _rasterio_info(path, ds)
            _check_layout(info, min_size)
            with gdal_errors(path, "reading the last pixel"):
                ds.read(window=Window(info.width - 1, info.height - 1, 1, 1))
        except BaseException:
            ds.close()
            raise
        return _RasterioSource(info, ds)
    array, roles = _decode_pillow(path, kind)
    info = RasterInfo(
        path=path,
        width=array.shape[2],
        height=array.shape[1],
        count=array.shape[0],
        dtype=str(array.dtype),
        colorinterp=roles,
        backend="pillow",
    )
    _check_layout(info, min_size)
    return _ArraySource(info, array)


def read_raster_info(path: str | Path, min_size: int = 2) -> RasterInfo:
    """Validate ``path`` and return its :class:`RasterInfo`.

    Raises :class:`RsgenError` (naming the file) if it is missing, not a PNG/JPEG/TIFF,
    truncated or corrupt, smaller than ``min_size`` px on a side, or has an
    unsupported data type or band layout.
    """
    with open_raster(path, min_size=min_size) as source:
        return source.info


def list_images(path: str | Path) -> list[Path]:
    """Return the images to process: ``[path]`` for a file, or for a folder all
    ``.png/.jpg/.jpeg/.tif/.tiff`` files below it (case-insensitive, recursive,
    sorted, hidden files such as ``._x.tif`` skipped).

    Raises :class:`RsgenError` for a missing path, a file with another suffix, or a
    folder without images.
    """
    path = Path(path)
    if not path.exists():
        raise RsgenError("no such file or folder", path)
    if path.is_file():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise RsgenError(f"not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})", path)
        return [path]
    found = sorted(
        p
        for p in path.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )
    if not found:
        raise RsgenError(f"folder contains no images ({', '.join(IMAGE_SUFFIXES)})", path)
    return found
