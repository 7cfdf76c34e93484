"""Raster input/output: validated reading of PNG/JPEG/(Geo)TIFF and atomic writing.

Readers
    Each file is sniffed by its first bytes, not its suffix.  TIFF/GeoTIFF is read
    with rasterio by windows, so a scene larger than memory works.  PNG and JPEG are
    decoded with Pillow, whose ``load()`` raises on truncated data (GDAL only warns);
    16-bit RGB(A) PNGs, which Pillow would reduce to 8 bits, are checked with Pillow
    and then read with rasterio.

Writers
    The output format follows the destination suffix: ``.tif``/``.tiff`` is a tiled,
    deflate-compressed GeoTIFF written row stripe by row stripe; ``.png``/``.jpg``/
    ``.jpeg`` is assembled in memory and saved with Pillow.  Every writer works on a
    temporary file in the destination folder that is renamed onto the destination
    only when complete, and deleted on failure.

Every user mistake (missing file, not an image, truncated file, image too small,
unsupported band layout or data type, unwritable output) raises
:class:`rsgen.errors.RsgenError` naming the file.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import struct
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from PIL import Image, ImageFile
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window

from rsgen.errors import RsgenError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
"""Suffixes (lower case) that :func:`list_images` and the writers accept."""

GEOTIFF_SUFFIXES = (".tif", ".tiff")
PILLOW_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
SUPPORTED_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
GTIFF_BLOCK = 256  # GeoTIFF output tile size; stripes are flushed in multiples of it

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
        step = max(1, math.ceil(max(self.info.width, self.info.height) / max_side))
        return self._array[:, ::step, ::step]


class _RasterioSource(RasterSource):
    """A raster read by windows through rasterio/GDAL."""

    def __init__(self, info: RasterInfo, dataset: rasterio.io.DatasetReader) -> None:
        self.info = info
        self._ds = dataset
        self.metadata = _dataset_metadata(dataset)

    def read(self, window: Window) -> np.ndarray:
        (r0, r1), (c0, c1) = window.toranges()
        with _gdal_errors(self.info.path, f"reading rows {r0}:{r1}, cols {c0}:{c1}"):
            return self._ds.read(window=window)

    def read_decimated(self, max_side: int = 1024) -> np.ndarray:
        step = max(1, math.ceil(max(self.info.width, self.info.height) / max_side))
        shape = (self.info.count, math.ceil(self.info.height / step), math.ceil(self.info.width / step))
        with _gdal_errors(self.info.path, "reading a decimated overview"):
            return self._ds.read(out_shape=shape, resampling=Resampling.nearest)

    def close(self) -> None:
        self._ds.close()


@contextlib.contextmanager
def _gdal_errors(path: Path, action: str) -> Iterator[None]:
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
            image = _pillow_mode(image)
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
            with _gdal_errors(path, "reading the last pixel"):
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


# --------------------------------------------------------------------------- writers


@dataclass
class OutputSpec:
    """Everything a writer needs to create the output raster."""

    width: int
    height: int
    count: int
    dtype: str
    crs: CRS | None = None
    transform: Affine | None = None  # None: write no geotransform
    nodata: float | None = None
    colorinterp: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


def scaled_spec(info: RasterInfo, metadata: dict[str, Any], scale: int) -> OutputSpec:
    """The output of upscaling ``info`` by ``scale``: same CRS/nodata/bands/dtype,
    pixel size divided by ``scale`` (origin unchanged), GCP pixel positions scaled."""
    meta = dict(metadata)
    if meta.get("gcps"):
        gcps, gcp_crs = meta["gcps"]
        meta["gcps"] = (
            [GroundControlPoint(g.row * scale, g.col * scale, g.x, g.y, g.z, g.id, g.info) for g in gcps],
            gcp_crs,
        )
    transform = info.transform @ Affine.scale(1 / scale) if info.georeferenced else None
    return OutputSpec(
        width=info.width * scale,
        height=info.height * scale,
        count=info.count,
        dtype=info.dtype,
        crs=info.crs,
        transform=transform,
        nodata=info.nodata,
        colorinterp=info.colorinterp,
        metadata=meta,
    )


class RasterWriter:
    """Writes an output raster top to bottom in row stripes into a temporary file in
    the destination folder; :meth:`commit` renames it onto the destination,
    :meth:`abort` deletes it.  Use as a context manager to abort on exceptions."""

    def __init__(self, dst: Path, spec: OutputSpec) -> None:
        self.dst = dst
        self.spec = spec
        self.rows_written = 0
        self._tmp = _make_temp(dst)

    def write_rows(self, rows: np.ndarray) -> None:
        """Append ``rows`` (count, n, width) in the output dtype below those already written."""
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        """Release resources without publishing."""

    def commit(self) -> RasterInfo:
        """Finish the file and atomically move it onto the destination."""
        if self.rows_written != self.spec.height:
            raise RuntimeError(f"wrote {self.rows_written} of {self.spec.height} rows")
        try:
            self._finish()
            _publish(self._tmp, self.dst)
        except OSError as exc:
            self.abort()
            raise RsgenError(f"cannot write output: {exc.strerror or exc}", self.dst) from exc
        except BaseException:
            self.abort()
            raise
        return self._result_info()

    backend = ""
    keeps_georeferencing = False

    def _result_info(self) -> RasterInfo:
        """What was written; georeferencing only for formats that store it."""
        s = self.spec
        georef = (
            {"crs": s.crs, "transform": s.transform or Affine.identity(), "nodata": s.nodata}
            if self.keeps_georeferencing
            else {}
        )
        return RasterInfo(
            path=self.dst,
            width=s.width,
            height=s.height,
            count=s.count,
            dtype=s.dtype,
            colorinterp=s.colorinterp,
            backend=self.backend,
            **georef,
        )

    def abort(self) -> None:
        """Delete the temporary file (and any GDAL side file)."""
        with contextlib.suppress(Exception):
            self._close()
        _discard(self._tmp)

    def __enter__(self) -> RasterWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.abort()


def _make_temp(dst: Path) -> Path:
    """Create an empty temporary file next to ``dst`` (same filesystem for os.replace)."""
    if dst.is_dir():
        raise RsgenError("output path is a folder", dst)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    except OSError as exc:
        raise RsgenError(f"cannot write output: {exc.strerror or exc}", dst) from exc
    os.close(fd)
    return Path(name)


def _umask() -> int:
    """The process umask (read from /proc where possible: setting it is not thread-safe)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish(tmp: Path, dst: Path) -> None:
    """Give the temp file normal permissions (mkstemp makes it 0600) and move it onto
    ``dst``, with a GDAL ``.aux.xml`` side file if one was written."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, dst)
    aux = Path(f"{tmp}.aux.xml")
    if aux.exists():
        os.replace(aux, Path(f"{dst}.aux.xml"))


def _discard(tmp: Path) -> None:
    for p in (tmp, Path(f"{tmp}.aux.xml")):
        with contextlib.suppress(OSError):
            p.unlink()


_GDAL_ROLES = {ci.name: ci for ci in ColorInterp}


class _GeoTiffWriter(RasterWriter):
    """Tiled, deflate-compressed (Big)GeoTIFF, written in full-width row windows that are
    multiples of the block height so no compressed block is ever rewritten."""

    backend = "rasterio"
    keeps_georeferencing = True

    def __init__(self, dst: Path, spec: OutputSpec) -> None:
        super().__init__(dst, spec)
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0
        self._flushed = 0
        try:
            self._ds = self._create()
        except BaseException:
            _discard(self._tmp)
            raise

    def _create(self) -> rasterio.io.DatasetWriter:
        s = self.spec
        roles = s.colorinterp if len(s.colorinterp) == s.count else ()
        options: dict[str, Any] = {
            "tiled": True,
            "blockxsize": GTIFF_BLOCK,
            "blockysize": GTIFF_BLOCK,
            "compress": "deflate",
            "predictor": 3 if s.dtype.startswith("float") else 2,
            "BIGTIFF": "IF_SAFER",
        }
        if roles[:3] == ("red", "green", "blue"):
            options["photometric"] = "RGB"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                ds = rasterio.open(
                    self._tmp,
                    "w",
                    driver="GTiff",
                    width=s.width,
                    height=s.height,
                    count=s.count,
                    dtype=s.dtype,
                    crs=s.crs,
                    transform=s.transform,
                    nodata=s.nodata,
                    **options,
                )
        except RasterioError as exc:
            raise RsgenError(f"cannot create GeoTIFF: {exc.__cause__ or exc}", self.dst) from exc
        _copy_metadata(ds, s.metadata, roles)
        return ds

    def write_rows(self, rows: np.ndarray) -> None:
        self._pending.append(rows)
        self._pending_rows += rows.shape[1]
        self.rows_written += rows.shape[1]
        if self._pending_rows >= GTIFF_BLOCK:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._pending:
            return
        block = np.concatenate(self._pending, axis=1) if len(self._pending) > 1 else self._pending[0]
        n = block.shape[1] if final else block.shape[1] // GTIFF_BLOCK * GTIFF_BLOCK
        if n:
            window = Window(0, self._flushed, self.spec.width, n)
            with _gdal_errors(self.dst, f"writing rows {self._flushed}:{self._flushed + n}"):
                self._ds.write(block[:, :n], window=window)
            self._flushed += n
        rest = block[:, n:]
        self._pending = [rest] if rest.shape[1] else []
        self._pending_rows = rest.shape[1]

    def _finish(self) -> None:
        self._flush(final=True)
        with _gdal_errors(self.dst, "closing the GeoTIFF"):
            self._ds.close()

    def _close(self) -> None:
        self._ds.close()


def _copy_metadata(ds: rasterio.io.DatasetWriter, meta: dict[str, Any], roles: Sequence[str]) -> None:
    """Copy band roles, tags, descriptions, units, scales/offsets and GCPs (best effort)."""

    def set_roles() -> None:
        ds.colorinterp = [_GDAL_ROLES.get(r, ColorInterp.undefined) for r in roles]

    def set_bands() -> None:
        for b, tags in enumerate(meta.get("band_tags", []), start=1):
            if tags:
                ds.update_tags(b, **tags)
        for b, text in enumerate(meta.get("descriptions", []), start=1):
            if text:
                ds.set_band_description(b, text)
        for b, unit in enumerate(meta.get("units", []), start=1):
            if unit:
                ds.set_band_unit(b, unit)

    def set_scales() -> None:
        if any(v != 1.0 for v in meta["scales"]) or any(v != 0.0 for v in meta["offsets"]):
            ds.scales = meta["scales"]
            ds.offsets = meta["offsets"]

    def set_gcps() -> None:
        ds.gcps = meta["gcps"]

    steps: list[Callable[[], object]] = [set_bands]
    if roles:
        steps.append(set_roles)
    if meta.get("tags"):
        steps.append(lambda: ds.update_tags(**meta["tags"]))
    if "scales" in meta and "offsets" in meta:
        steps.append(set_scales)
    if meta.get("gcps"):
        steps.append(set_gcps)
    for step in steps:
        try:
            step()
        except (RasterioError, ValueError, TypeError) as exc:  # metadata is best effort
            logger.debug("could not copy metadata: %s", exc)


_PILLOW_LAYOUTS = {
    ("uint8", ("gray",)): "L",
    ("uint8", ("gray", "alpha")): "LA",
    ("uint8", ("rgb",)): "RGB",
    ("uint8", ("rgb", "alpha")): "RGBA",
    ("uint16", ("gray",)): "I;16",
}


def _pillow_mode_for(spec: OutputSpec) -> str | None:
    roles = spec.colorinterp if len(spec.colorinterp) == spec.count else ("undefined",) * spec.count
    alpha = spec.count in (2, 4) and roles[-1] == "alpha"
    colour = spec.count - alpha
    key = ("gray",) if colour == 1 else ("rgb",) if colour == 3 else None
    if key is None:
        return None
    return _PILLOW_LAYOUTS.get((spec.dtype, key + (("alpha",) if alpha else ())))


class _PillowWriter(RasterWriter):
    """PNG/JPEG output: the whole image is assembled in memory, then saved with Pillow."""

    backend = "pillow"

    def __init__(self, dst: Path, spec: OutputSpec, fmt: str) -> None:
        mode = _pillow_mode_for(spec)
        if mode is None or (fmt == "JPEG" and mode not in ("L", "RGB")):
            what = f"{spec.count}-band {spec.dtype}"
            raise RsgenError(f"cannot save {what} data as {fmt}; write a .tif instead", dst)
        self._fmt = fmt
        self._array = np.empty((spec.count, spec.height, spec.width), dtype=spec.dtype)
        super().__init__(dst, spec)
        if spec.crs is not None or spec.transform is not None:
            logger.warning("%s: %s output has no georeferencing; write a .tif to keep it", dst, fmt)

    def write_rows(self, rows: np.ndarray) -> None:
        n = rows.shape[1]
        self._array[:, self.rows_written : self.rows_written + n] = rows
        self.rows_written += n

    def _finish(self) -> None:
        array = self._array[0] if self._array.shape[0] == 1 else np.moveaxis(self._array, 0, -1)
        image = Image.fromarray(np.ascontiguousarray(array))
        options = {"quality": 95, "subsampling": 0} if self._fmt == "JPEG" else {}
        image.save(self._tmp, format=self._fmt, **options)
        self._array = np.empty(0)


def open_writer(dst: str | Path, spec: OutputSpec) -> RasterWriter:
    """Create the writer for ``dst``'s suffix (.tif/.tiff GeoTIFF; .png/.jpg/.jpeg Pillow).

    Raises :class:`RsgenError` for an unknown suffix, a layout the format cannot hold
    (e.g. 4 bands as PNG, alpha as JPEG) or an unwritable destination.
    """
    dst = Path(dst)
    suffix = dst.suffix.lower()
    if suffix in GEOTIFF_SUFFIXES:
        return _GeoTiffWriter(dst, spec)
    if suffix in PILLOW_FORMATS:
        return _PillowWriter(dst, spec, PILLOW_FORMATS[suffix])
    raise RsgenError(f"unknown output format {dst.suffix!r} (use one of {', '.join(IMAGE_SUFFIXES)})", dst)


# --------------------------------------------------------------------------- RGB helpers


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
