"""Band, data type and nodata policy of raster upscaling (see ``docs/raster-io.md``).

* bands with colour interpretation *alpha* are resized with nearest neighbour and
  never go through the model;
* if the file declares red, green and blue bands (or has exactly three data bands)
  they go through the model together as RGB; every other band goes through it
  alone, replicated to three channels, and the output is the mean of the three
  output channels;
* uint8 is divided by 255; other types are stretched linearly with the 0.1 and 99.9
  percentiles of a decimated read (one lo/hi shared by the RGB bands, one per single
  band), without clipping, so the inverse maps the output back to the input units;
* nodata (and non-finite float) pixels are replaced by the band's valid mean before
  the model, and output pixels whose nearest LR pixel was nodata are set to nodata.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rsgen.io.read import RasterInfo, RasterSource

STRETCH_PERCENTILES = (0.1, 99.9)


@dataclass(frozen=True)
class BandPlan:
    """How the bands of a raster go through the model (0-based band indices).

    ``groups`` are model inputs: a 3-tuple is an RGB input, a 1-tuple a single band
    replicated to three channels whose output is the channel mean.  ``alpha`` bands
    are resized with nearest neighbour instead.
    """

    groups: tuple[tuple[int, ...], ...]
    alpha: tuple[int, ...]

    @property
    def data_bands(self) -> tuple[int, ...]:
        """Band index of each model channel, in stripe-channel order."""
        return tuple(b for group in self.groups for b in group)

    def channel_slices(self) -> tuple[slice, ...]:
        """Slices of the stripe channels belonging to each group."""
        slices, start = [], 0
        for group in self.groups:
            slices.append(slice(start, start + len(group)))
            start += len(group)
        return tuple(slices)


def plan_bands(info: RasterInfo) -> BandPlan:
    """Decide the band handling from the bands' colour interpretation (see module doc)."""
    roles = info.colorinterp if len(info.colorinterp) == info.count else ("undefined",) * info.count
    alpha = tuple(i for i, role in enumerate(roles) if role == "alpha")
    data = [i for i in range(info.count) if i not in alpha]
    rgb: tuple[int, ...] = ()
    if all(c in roles for c in ("red", "green", "blue")):
        rgb = (roles.index("red"), roles.index("green"), roles.index("blue"))
    elif len(data) == 3:
        rgb = tuple(data)
    singles = tuple((i,) for i in data if i not in rgb)
    return BandPlan(groups=((rgb,) if rgb else ()) + singles, alpha=alpha)


def _valid_mask(band: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """Valid pixels of one band (not nodata, finite), or None when all are valid."""
    mask = np.isfinite(band) if band.dtype.kind == "f" else None
    if nodata is not None and not math.isnan(nodata):
        differs = band != nodata
        mask = differs if mask is None else mask & differs
    return mask


@dataclass(frozen=True)
class Normalizer:
    """Linear map between raster values and model inputs, one (lo, hi) per model channel:
    ``x' = (x - lo) / (hi - lo)``, not clipped, so :meth:`inverse` is exact."""

    bands: tuple[int, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    fill: tuple[float, ...]  # model-input value that replaces nodata pixels
    nodata: float | None

    def forward(self, raw: np.ndarray) -> np.ndarray:
        """Raw LR rows (count, h, w) -> normalised model channels (C, h, w) float32."""
        out = np.empty((len(self.bands), raw.shape[1], raw.shape[2]), np.float32)
        with np.errstate(invalid="ignore", over="ignore"):
            for c, b in enumerate(self.bands):
                x = out[c]
                x[...] = raw[b]
                x -= self.lo[c]
                x /= self.hi[c] - self.lo[c]
                mask = _valid_mask(raw[b], self.nodata)
                if mask is not None:
                    x[~mask] = self.fill[c]
        return out

    def inverse(self, channel: int, values: np.ndarray, dtype: str) -> np.ndarray:
        """Model output of one channel -> raster units (unclipped; float32 suffices for
        8/16-bit types, float64 otherwise)."""
        work = np.float32 if np.dtype(dtype).itemsize <= 2 else np.float64
        return values.astype(work) * work(self.hi[channel] - self.lo[channel]) + work(self.lo[channel])


def fit_normalizer(source: RasterSource, plan: BandPlan) -> Normalizer:
    """uint8: lo=0, hi=255.  Other types: 0.1/99.9 percentiles of the valid pixels of a
    decimated read (shared by the RGB group).  Fill value: each band's valid mean."""
    info = source.info
    n = len(plan.data_bands)
    if info.dtype == "uint8" and info.nodata is None:
        return Normalizer(plan.data_bands, (0.0,) * n, (255.0,) * n, (0.0,) * n, None)
    sample = source.read_decimated()
    lo, hi, fill = [], [], []
    for group in plan.groups:
        values = []
        for b in group:
            mask = _valid_mask(sample[b], info.nodata)
            values.append((sample[b] if mask is None else sample[b][mask]).astype(np.float64).ravel())
        glo, ghi = _stretch_limits(np.concatenate(values), info.dtype)
        for v in values:
            lo.append(glo)
            hi.append(ghi)
            fill.append(((float(v.mean()) if v.size else glo) - glo) / (ghi - glo))
    return Normalizer(plan.data_bands, tuple(lo), tuple(hi), tuple(fill), info.nodata)


def _stretch_limits(values: np.ndarray, dtype: str) -> tuple[float, float]:
    if dtype == "uint8":
        return 0.0, 255.0
    if not values.size:
        return 0.0, 1.0
    lo, hi = (float(p) for p in np.percentile(values, STRETCH_PERCENTILES))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _nearest(array: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(array, scale, axis=-2), scale, axis=-1)


def _to_dtype(values: np.ndarray, dtype: str) -> np.ndarray:
    """Round (integers) and clip to the range of ``dtype``."""
    if np.dtype(dtype).kind == "f":
        limits = np.finfo(dtype)
        return np.clip(values, limits.min, limits.max).astype(dtype)
    limits = np.iinfo(dtype)
    return np.clip(np.rint(values), limits.min, limits.max).astype(dtype)


def _nudge(nodata: float, dtype: np.dtype) -> float:
    """A value next to ``nodata`` for valid output pixels that happen to equal it."""
    if dtype.kind == "f":
        return float(np.nextafter(dtype.type(nodata), dtype.type(np.inf)))
    return nodata - 1 if nodata >= np.iinfo(dtype).max else nodata + 1


def finish_rows(
    blended: np.ndarray, raw: np.ndarray, plan: BandPlan, norm: Normalizer, scale: int, dtype: str
) -> np.ndarray:
    """Blended model channels + the matching raw LR rows -> output rows in ``dtype``."""
    out = np.empty((raw.shape[0], blended.shape[1], blended.shape[2]), dtype)
    for c, b in enumerate(norm.bands):
        out[b] = _to_dtype(norm.inverse(c, blended[c], dtype), dtype)
        mask = _valid_mask(raw[b], norm.nodata)
        if mask is None:
            continue
        valid = _nearest(mask, scale)
        if norm.nodata is not None and not math.isnan(norm.nodata):
            clash = valid & (out[b] == norm.nodata)
            out[b][clash] = _nudge(norm.nodata, out.dtype)
        out[b][~valid] = np.nan if norm.nodata is None else norm.nodata
    for b in plan.alpha:
        out[b] = _nearest(raw[b], scale)
    return out
