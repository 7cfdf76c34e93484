"""Editing a region of a large scene: cut a context window, edit it as RGB, write it back.

A text-guided editor works on an (H, W, 3) uint8 RGB image of a few hundred pixels, not on
a scene of many thousands.  This module is the bridge:

1. :func:`context_window` grows the user's region of interest (ROI, a pixel rectangle
   ``x, y, width, height``) by a margin of context, clipped to the scene and capped at
   ``max_side`` pixels per side;
2. :func:`read_window_rgb` reads that window as the editor's RGB image, plus a
   :class:`WindowContext` holding what is needed to map the edit back;
3. :func:`write_edited_scene` writes a copy of the whole scene, streamed in row blocks,
   in which only the pixels of ``changed_mask`` (e.g. the ROI plus its blend band, see
   :func:`roi_mask`) take the edited values.

Band and value policy (the RGB view of :mod:`rsgen.io.rgb`, the stretch of
:mod:`rsgen.io.bands`):

* the RGB bands are those :func:`rsgen.io.rgb._rgb_band_indices` picks: declared
  red/green/blue, else three data bands in order, else one band replicated to gray;
  alpha and every other band are copied unchanged;
* uint8 data is shown as is and written back as is (a gray band gets the mean of the
  three edited channels);
* other types are stretched to 8 bits with the scene-wide :class:`~rsgen.io.bands.Normalizer`
  (0.1/99.9 percentiles of a decimated read of the whole scene, so repeated edits of one
  scene share one colour scale), and edited values go back through its inverse,
  rounded and clipped to the data type;
* a band value whose 8-bit value the editor left unchanged keeps its original value
  exactly (so an identity edit reproduces the scene bit for bit, and the faint outer
  part of a blend band does not quantise the data to 8 bits);
* nodata pixels (per band, as GDAL judges them) stay nodata; an edited valid value
  that would equal the nodata value is nudged by one unit.

Outside ``changed_mask`` every pixel of every band is copied bit for bit, and the copy
keeps CRS, geotransform, GCPs, nodata, data type, band count, band roles, descriptions
and tags (the metadata policy of :mod:`rsgen.io.write`).  A JPEG destination is
re-compressed, so only PNG and GeoTIFF outputs are bit-identical outside the edit.
"""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from rasterio.windows import Window

from rsgen.errors import RsgenError
from rsgen.io.bands import BandPlan, Normalizer, _nudge, _to_dtype, _valid_mask, fit_normalizer
from rsgen.io.read import RasterInfo, RasterSource, open_raster
from rsgen.io.rgb import _rgb_band_indices
from rsgen.io.write import GTIFF_BLOCK, open_writer, scaled_spec

logger = logging.getLogger(__name__)

DEFAULT_MARGIN = 64
"""Pixels of context added on each side of the ROI (less at the scene border)."""

DEFAULT_MAX_SIDE = 1024
"""Largest window side (pixels) an editor is given."""

ROW_BLOCK = GTIFF_BLOCK
"""Rows read and written at a time by :func:`write_edited_scene` (the GeoTIFF block height)."""


class PixelWindow(NamedTuple):
    """A pixel rectangle of a raster: column ``x``, row ``y``, ``width`` x ``height`` pixels."""

    x: int
    y: int
    width: int
    height: int

    def to_rasterio(self) -> Window:
        """The same rectangle as a :class:`rasterio.windows.Window`."""
        return Window(self.x, self.y, self.width, self.height)

    def __str__(self) -> str:
        return f"{self.x},{self.y},{self.width},{self.height}"


def _as_rect(rect: Sequence[int], what: str, path: str | Path | None) -> PixelWindow:
    """``rect`` as a PixelWindow of 4 integers, or RsgenError."""
    try:
        if len(rect) != 4:
            raise TypeError
        return PixelWindow(*(operator.index(v) for v in rect))
    except TypeError:
        raise RsgenError(f"{what} must be 4 integers x, y, width, height (got {rect!r})", path) from None


def check_rect(
    rect: Sequence[int], width: int, height: int, what: str = "ROI", path: str | Path | None = None
) -> PixelWindow:
    """Return ``rect`` (x, y, width, height) as a :class:`PixelWindow` if it is a non-empty
    rectangle entirely inside a ``width`` x ``height`` image.

    Raises :class:`RsgenError` (naming ``path`` when given) otherwise, e.g.
    ``ROI 10,10,0,5 is empty`` or ``ROI 600,10,20,5 lies outside the 500x400 image``.
    """
    r = _as_rect(rect, what, path)
    if r.width <= 0 or r.height <= 0:
        raise RsgenError(f"{what} {r} is empty", path)
    size = f"{width}x{height}"
    if r.x >= width or r.y >= height or r.x + r.width <= 0 or r.y + r.height <= 0:
        raise RsgenError(f"{what} {r} lies outside the {size} image", path)
    if r.x < 0 or r.y < 0 or r.x + r.width > width or r.y + r.height > height:
        raise RsgenError(f"{what} {r} extends beyond the {size} image", path)
    return r


def _grow_axis(start: int, length: int, size: int, margin: int, max_side: int) -> tuple[int, int]:
    """Grow [start, start + length) by ``margin`` on both sides, clip to [0, size), and
    trim the two margins (the smaller one last) until the span is at most ``max_side``."""
    before = min(margin, start)
    after = min(margin, size - start - length)
    budget = max_side - length
    if before + after > budget:
        before = min(before, max(budget - after, budget // 2))
        after = min(after, budget - before)
    return start - before, length + before + after


def context_window(
    roi: Sequence[int],
    width: int,
    height: int,
    margin: int = DEFAULT_MARGIN,
    max_side: int = DEFAULT_MAX_SIDE,
    path: str | Path | None = None,
) -> PixelWindow:
    """The window an editor sees for ``roi`` (x, y, w, h) in a ``width`` x ``height`` scene.

    The ROI is grown by ``margin`` pixels of context on each side and clipped to the
    scene, so at a border the margin is smaller.  If a side would exceed ``max_side``,
    the margins on that axis are trimmed (evenly where possible) rather than refused:
    the ROI is what the user asked for, the context is a bonus.  Callers must therefore
    build their blend band from the returned window (see :func:`roi_mask`), never assume
    the full margin.  Any side of the ROI itself longer than ``max_side`` is an ROI too
    big to edit in one go.

    Raises :class:`RsgenError` (naming ``path`` when given) for an empty ROI, one not
    inside the scene, a negative margin, a ``max_side`` below 1 or an ROI too big.
    """
    r = check_rect(roi, width, height, "ROI", path)
    margin, max_side = operator.index(margin), operator.index(max_side)
    if margin < 0:
        raise RsgenError(f"margin must be 0 or more pixels (got {margin})", path)
    if max_side < 1:
        raise RsgenError(f"max_side must be at least 1 pixel (got {max_side})", path)
    if r.width > max_side or r.height > max_side:
        raise RsgenError(
            f"ROI {r} is {r.width}x{r.height} px, too big to edit: at most {max_side} px per side "
            "(draw a smaller ROI or raise max_side)",
            path,
        )
    x, w = _grow_axis(r.x, r.width, width, margin, max_side)
    y, h = _grow_axis(r.y, r.height, height, margin, max_side)
    return PixelWindow(x, y, w, h)


def roi_mask(window: Sequence[int], roi: Sequence[int], grow: int = 0) -> np.ndarray:
    """A bool (h, w) mask over ``window``: True on ``roi`` grown by ``grow`` pixels on each
    side (e.g. a blend band), clipped to the window.  Both are scene pixel rectangles."""
    win, r = _as_rect(window, "window", None), _as_rect(roi, "ROI", None)
    mask = np.zeros((win.height, win.width), bool)
    x0, y0 = max(r.x - grow - win.x, 0), max(r.y - grow - win.y, 0)
    x1, y1 = r.x + r.width + grow - win.x, r.y + r.height + grow - win.y
    if x1 > 0 and y1 > 0:
        mask[y0:y1, x0:x1] = True
    return mask


@dataclass(frozen=True, eq=False)
class WindowContext:
    """What :func:`read_window_rgb` read, kept to map an edit of the RGB view back.

    ``bands`` are the 0-based source bands shown as R, G, B (one band three times for
    gray); ``normalizer`` is None for uint8 data (shown as is), else the scene-wide
    stretch; ``raw`` holds all bands of the window in the source type (count, h, w);
    ``rgb`` is the (h, w, 3) uint8 view handed to the editor; ``nodata_mask`` (h, w) is
    True where any shown band is nodata (or non-finite), filled with the band mean in
    ``rgb`` for stretched data.
    """

    info: RasterInfo
    window: PixelWindow
    bands: tuple[int, int, int]
    normalizer: Normalizer | None
    raw: np.ndarray
    rgb: np.ndarray
    nodata_mask: np.ndarray


def _rgb_view(raw: np.ndarray, bands: tuple[int, int, int], norm: Normalizer | None) -> np.ndarray:
    """Raw window (count, h, w) -> (h, w, 3) uint8: the bands as is (uint8), or stretched,
    rounded and clipped."""
    if norm is None:
        return np.ascontiguousarray(np.moveaxis(raw[list(bands)], 0, -1))
    x = norm.forward(raw)
    x *= 255.0
    np.rint(x, out=x)
    np.clip(x, 0.0, 255.0, out=x)
    return np.ascontiguousarray(np.moveaxis(x.astype(np.uint8), 0, -1))


def read_window_rgb(path: str | Path, window: Sequence[int]) -> tuple[np.ndarray, WindowContext]:
    """Read ``window`` (x, y, w, h, inside the image) of the raster ``path`` as an
    (h, w, 3) uint8 RGB image for an editor, and the :class:`WindowContext` that
    :func:`write_edited_scene` needs (see the module doc for the band and value policy).

    Raises :class:`RsgenError` naming the file for an unreadable raster, a window not
    inside it, or a band layout without an RGB view (e.g. 4 bands without declared
    red/green/blue roles: declare them with ``gdal_edit.py -colorinterp_1 red ...``).
    """
    with open_raster(path, min_size=1) as source:
        info = source.info
        win = check_rect(window, info.width, info.height, "window", info.path)
        bands = _rgb_band_indices(info)
        raw = source.read(win.to_rasterio())
        norm = _fit_view(source, bands)
    rgb = _rgb_view(raw, bands, norm)
    nodata = np.zeros((win.height, win.width), bool)
    for b in set(bands):
        valid = _valid_mask(raw[b], info.nodata)
        if valid is not None:
            nodata |= ~valid
    for array in (raw, rgb, nodata):
        array.setflags(write=False)  # the context must keep what was read, whatever the editor does
    context = WindowContext(info, win, bands, norm, raw, rgb, nodata)
    return rgb.copy(), context


def _fit_view(source: RasterSource, bands: tuple[int, int, int]) -> Normalizer | None:
    """None for uint8 (shown as is), else the scene-wide stretch of the RGB bands as one group."""
    if source.info.dtype == "uint8":
        return None
    return fit_normalizer(source, BandPlan(groups=(bands,), alpha=()))


def _check_edit(context: WindowContext, edited_rgb: np.ndarray, changed_mask: np.ndarray) -> None:
    h, w = context.window.height, context.window.width
    if edited_rgb.shape != (h, w, 3) or edited_rgb.dtype != np.uint8:
        raise ValueError(
            f"edited_rgb must be a ({h}, {w}, 3) uint8 array like the window, "
            f"got {edited_rgb.shape} {edited_rgb.dtype}"
        )
    if changed_mask.shape != (h, w) or changed_mask.dtype != np.bool_:
        raise ValueError(
            f"changed_mask must be a ({h}, {w}) bool array, got {changed_mask.shape} {changed_mask.dtype}"
        )


def edited_window(context: WindowContext, edited_rgb: np.ndarray, changed_mask: np.ndarray) -> np.ndarray:
    """The window's raw data (count, h, w) in the source type with the edit applied:
    only ``changed_mask`` pixels of the RGB bands whose 8-bit value changed and that are
    not nodata take the edited values mapped back; everything else is the original."""
    edited_rgb, changed_mask = np.asarray(edited_rgb), np.asarray(changed_mask)
    _check_edit(context, edited_rgb, changed_mask)
    info, norm = context.info, context.normalizer
    dtype = np.dtype(info.dtype)
    out = context.raw.copy()
    for b in dict.fromkeys(context.bands):  # unique bands, in order
        channels = [c for c, band in enumerate(context.bands) if band == b]
        new8 = edited_rgb[..., channels]
        changed = changed_mask & (new8 != context.rgb[..., channels]).any(axis=-1)
        valid = _valid_mask(out[b], info.nodata)
        if valid is not None:
            changed &= valid
        if not changed.any():
            continue
        picked = new8[changed]  # (n, k)
        if norm is None:
            values = picked.astype(np.float32).mean(axis=-1)
        else:
            values = np.mean(
                [norm.inverse(c, picked[:, i] / np.float32(255), info.dtype) for i, c in enumerate(channels)],
                axis=0,
            )
        new = _to_dtype(values, info.dtype)
        if info.nodata is not None and not math.isnan(info.nodata):
            new[new == info.nodata] = _nudge(info.nodata, dtype)
        out[b][changed] = new
    return out


def write_edited_scene(
    src_path: str | Path,
    dst_path: str | Path,
    context: WindowContext,
    edited_rgb: np.ndarray,
    changed_mask: np.ndarray,
) -> RasterInfo:
    """Write a copy of the scene ``src_path`` to ``dst_path`` with the edit of the window
    applied to the ``changed_mask`` pixels (see :func:`edited_window`); every other pixel
    of every band is copied bit for bit.

    ``edited_rgb`` is the editor's (h, w, 3) uint8 result for ``context.window`` and
    ``changed_mask`` a bool (h, w) array (its values outside the mask are ignored).  The
    scene is streamed in blocks of :data:`ROW_BLOCK` rows (a PNG/JPEG scene is in memory
    anyway); the output format follows ``dst_path``'s suffix and keeps georeferencing,
    nodata, data type, bands, band roles and descriptions.  ``dst_path`` appears only when
    complete; on any error no output or temporary file is left and an existing
    ``dst_path`` is unchanged.  Returns the :class:`RasterInfo` of the output.

    Raises :class:`RsgenError` when ``dst_path`` is the source, cannot be written or
    cannot hold the bands (e.g. 4-band uint16 as PNG), and when ``src_path`` is not the
    raster the window was read from or its window pixels changed since (read it again).
    ``ValueError`` for arrays of the wrong shape or type.
    """
    src, dst = Path(src_path), Path(dst_path)
    patch = edited_window(context, edited_rgb, changed_mask)
    with open_raster(src, min_size=1) as source:
        info = source.info
        if dst.exists() and dst.resolve() == src.resolve():
            raise RsgenError("output would overwrite the input; write the edit to a copy", dst)
        ref = context.info
        layout = (info.width, info.height, info.count, info.dtype)
        if layout != (ref.width, ref.height, ref.count, ref.dtype):
            raise RsgenError(
                f"is a {info.width}x{info.height} {info.count}-band {info.dtype} raster, but the window "
                f"was read from a {ref.width}x{ref.height} {ref.count}-band {ref.dtype} one ({ref.path})",
                src,
            )
        if dst.suffix.lower() in (".jpg", ".jpeg"):
            logger.warning("%s: JPEG output is re-compressed; write .png or .tif to keep pixels exact", dst)
        with open_writer(dst, scaled_spec(info, source.metadata, 1)) as writer:
            for y0 in range(0, info.height, ROW_BLOCK):
                rows = source.read(Window(0, y0, info.width, min(ROW_BLOCK, info.height - y0)))
                _paste(rows, y0, patch, context, src)
                writer.write_rows(rows)
            return writer.commit()


def _paste(rows: np.ndarray, y0: int, patch: np.ndarray, context: WindowContext, src: Path) -> None:
    """Put the patch rows overlapping block ``rows`` (starting at scene row ``y0``) in place,
    after checking that the source still holds what was read there."""
    win = context.window
    r0, r1 = max(y0, win.y), min(y0 + rows.shape[1], win.y + win.height)
    if r0 >= r1:
        return
    target = rows[:, r0 - y0 : r1 - y0, win.x : win.x + win.width]
    original = context.raw[:, r0 - win.y : r1 - win.y]
    if np.ascontiguousarray(target).tobytes() != np.ascontiguousarray(original).tobytes():
        raise RsgenError(
            f"pixels of window {win} differ from those the edit was made on (file changed since "
            "it was read?); read the window again",
            src,
        )
    target[...] = patch[:, r0 - win.y : r1 - win.y]
