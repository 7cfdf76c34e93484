"""Raster writing: atomic output of GeoTIFF, PNG and JPEG files row stripe by row stripe.

The output format follows the destination suffix: ``.tif``/``.tiff`` is a tiled,
deflate-compressed GeoTIFF written in full-width row windows; ``.png``/``.jpg``/
``.jpeg`` is assembled in memory and saved with Pillow.  Every writer works on a
temporary file in the destination folder that is renamed onto the destination only
when complete, and deleted on failure.

An unknown suffix, a band layout the format cannot hold or an unwritable destination
raises :class:`rsgen.errors.RsgenError` naming the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from PIL import Image
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window

from rsgen.errors import RsgenError
from rsgen.files import discard, publish, temp_path_beside
from rsgen.io.read import IMAGE_SUFFIXES, RasterInfo, gdal_errors

logger = logging.getLogger(__name__)

GEOTIFF_SUFFIXES = (".tif", ".tiff")
PILLOW_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
GTIFF_BLOCK = 256  # GeoTIFF output tile size; stripes are flushed in multiples of it


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
        return temp_path_beside(dst)
    except OSError as exc:
        raise RsgenError(f"cannot write output: {exc.strerror or exc}", dst) from exc


def _publish(tmp: Path, dst: Path) -> None:
    """Give the temp file normal permissions (mkstemp makes it 0600) and move it onto
    ``dst``, with a GDAL ``.aux.xml`` side file if one was written."""
    publish(tmp, dst)
    aux = Path(f"{tmp}.aux.xml")
    if aux.exists():
        os.replace(aux, Path(f"{dst}.aux.xml"))


def _discard(tmp: Path) -> None:
    discard(tmp, Path(f"{tmp}.aux.xml"))


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
            with gdal_errors(self.dst, f"writing rows {self._flushed}:{self._flushed + n}"):
                self._ds.write(block[:, :n], window=window)
            self._flushed += n
        rest = block[:, n:]
        self._pending = [rest] if rest.shape[1] else []
        self._pending_rows = rest.shape[1]

    def _finish(self) -> None:
        self._flush(final=True)
        with gdal_errors(self.dst, "closing the GeoTIFF"):
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


#: libjpeg's largest side (JPEG_MAX_DIMENSION).
JPEG_MAX_SIDE = 65500


def check_output(dst: str | Path, spec: OutputSpec) -> None:
    """RsgenError, before any work, when ``dst``'s format cannot hold ``spec``: an unknown
    suffix, a band layout PNG/JPEG cannot store, or a JPEG side over 65,500 px."""
    dst = Path(dst)
    suffix = dst.suffix.lower()
    if suffix in GEOTIFF_SUFFIXES:
        return
    if suffix not in PILLOW_FORMATS:
        raise RsgenError(
            f"unknown output format {dst.suffix!r} (use one of {', '.join(IMAGE_SUFFIXES)})", dst
        )
    fmt = PILLOW_FORMATS[suffix]
    mode = _pillow_mode_for(spec)
    if mode is None or (fmt == "JPEG" and mode not in ("L", "RGB")):
        what = f"{spec.count}-band {spec.dtype}"
        raise RsgenError(f"cannot save {what} data as {fmt}; write a .tif instead", dst)
    if fmt == "JPEG" and max(spec.width, spec.height) > JPEG_MAX_SIDE:
        raise RsgenError(
            f"output would be {spec.width}x{spec.height} px; JPEG holds at most {JPEG_MAX_SIDE} px per "
            "side: write a .tif instead",
            dst,
        )


class _PillowWriter(RasterWriter):
    """PNG/JPEG output: the whole image is assembled in memory, then saved with Pillow."""

    backend = "pillow"

    def __init__(self, dst: Path, spec: OutputSpec, fmt: str) -> None:
        check_output(dst, spec)
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
    check_output(dst, spec)
    suffix = dst.suffix.lower()
    if suffix in GEOTIFF_SUFFIXES:
        return _GeoTiffWriter(dst, spec)
    return _PillowWriter(dst, spec, PILLOW_FORMATS[suffix])
