"""Tiled, seam-free inference of an upscaling model over rasters of any size.

The scene is cut into low-resolution (LR) tiles of ``tile`` px that overlap their
neighbours by at least ``overlap`` px.  Tiles are processed one row stripe at a
time; overlapping model outputs are blended with feathered (linear ramp) weights,
and output rows that no later stripe can touch are normalised and handed to the
writer at once.  Memory is therefore proportional to scene width x tile height,
never to the scene.

Band, data type and nodata policy (see ``docs/raster-io.md``):

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
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rasterio.windows import Window
from tqdm import tqdm

from rsgen.errors import RsgenError
from rsgen.io.raster import RasterInfo, RasterSource, open_raster, open_writer, scaled_spec

ModelFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps float32 (N, 3, h, w) in [0, 1] to (N, 3, h*scale, w*scale)."""

STRETCH_PERCENTILES = (0.1, 99.9)


class TileError(RsgenError):
    """The model failed, or returned an unusable result, on the tiles named in the message."""

    def __init__(self, message: str, path: str | Path | None = None, windows: Sequence[Window] = ()) -> None:
        super().__init__(message, path)
        self.windows = tuple(windows)


# --------------------------------------------------------------------------- geometry


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Offsets of tiles of ``min(tile, length)`` px covering ``[0, length)``.

    Neighbours overlap by at least ``overlap`` px (``overlap < tile``); the tiles are
    spread evenly, so the first starts at 0 and the last ends at ``length``.
    """
    tile = min(tile, length)
    if tile >= length:
        return [0]
    step = tile - overlap
    n = math.ceil((length - tile) / step) + 1
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


@dataclass(frozen=True)
class TileGrid:
    """LR tile layout of a ``width`` x ``height`` image (all tiles share one size)."""

    width: int
    height: int
    tile_w: int
    tile_h: int
    overlap: int
    xs: tuple[int, ...]
    ys: tuple[int, ...]

    @classmethod
    def build(cls, width: int, height: int, tile: int, overlap: int) -> TileGrid:
        """Clamp ``overlap`` to ``[0, tile // 2]`` and tile sizes to the image size."""
        overlap = max(0, min(overlap, tile // 2))
        return cls(
            width=width,
            height=height,
            tile_w=min(tile, width),
            tile_h=min(tile, height),
            overlap=overlap,
            xs=tuple(tile_starts(width, tile, overlap)),
            ys=tuple(tile_starts(height, tile, overlap)),
        )

    @property
    def n_tiles(self) -> int:
        """Number of tiles."""
        return len(self.xs) * len(self.ys)


def feather_ramp(size: int, overlap: int, lead: bool, trail: bool) -> np.ndarray:
    """1-D blending weights of a tile ``size`` px long whose leading/trailing edge
    overlaps a neighbour by (at least) ``overlap`` px.

    Inside an overlap the weight is 0 over its outer quarter (where the model sees
    the tile border), rises linearly over the middle half and is 1 beyond, so two
    neighbours' ramps sum to 1.  Edges on the image border keep weight 1.
    """
    weights = np.ones(size, np.float32)
    if overlap <= 0:
        return weights
    margin = overlap // 4
    ramp = np.clip((np.arange(size) + 0.5 - margin) / (overlap - 2 * margin), 0.0, 1.0).astype(np.float32)
    if lead:
        weights = np.minimum(weights, ramp)
    if trail:
        weights = np.minimum(weights, ramp[::-1])
    return weights


class _StripeBlender:
    """Weighted sums of overlapping output tiles for ``capacity`` rows starting at ``top``.

    Buffers are allocated once; :meth:`pop` shifts the unfinished rows up in place.
    """

    def __init__(self, channels: int, width: int, capacity: int) -> None:
        self.top = 0
        self._acc = np.zeros((channels, capacity, width), np.float32)
        self._wsum = np.zeros((capacity, width), np.float32)

    def add(self, values: np.ndarray, weight: np.ndarray, y0: int, x0: int) -> None:
        """Accumulate ``values`` (C, h, w) with ``weight`` (h, w) at output row/col ``y0``/``x0``."""
        h, w = weight.shape
        r = y0 - self.top
        self._acc[:, r : r + h, x0 : x0 + w] += values * weight
        self._wsum[r : r + h, x0 : x0 + w] += weight

    def pop(self, bottom: int) -> np.ndarray:
        """Return the blended rows [top, bottom) and forget them."""
        n = bottom - self.top
        rows = self._acc[:, :n] / self._wsum[:n]
        keep = self._wsum.shape[0] - n
        self._acc[:, :keep] = self._acc[:, n:]
        self._wsum[:keep] = self._wsum[n:]
        self._acc[:, keep:] = 0.0
        self._wsum[keep:] = 0.0
        self.top = bottom
        return rows


# --------------------------------------------------------------------------- model calls


@dataclass(frozen=True)
class _Job:
    model_fn: ModelFn
    scale: int
    batch_size: int
    groups: tuple[slice, ...]  # channel slices of the LR stripe: 3 channels = RGB, 1 = single band
    path: Path | None = None

    @property
    def channels(self) -> int:
        return sum(g.stop - g.start for g in self.groups)


def _describe(windows: Sequence[Window]) -> str:
    parts = [
        f"rows {w.row_off}:{w.row_off + w.height}, cols {w.col_off}:{w.col_off + w.width}" for w in windows
    ]
    return ("LR tile " if len(parts) == 1 else "LR tiles ") + "; ".join(parts)


def _call_model(job: _Job, arrays: list[np.ndarray], windows: list[Window]) -> np.ndarray:
    """Run the model on a batch of (1 or 3, h, w) arrays; return (N, 3, h*s, w*s) float32."""
    x = torch.stack([torch.from_numpy(a).expand(3, -1, -1) for a in arrays])
    n, _, h, w = x.shape
    expected = (n, 3, h * job.scale, w * job.scale)
    try:
        with torch.inference_mode():
            y = job.model_fn(x)
    except Exception as exc:
        hint = " (try a smaller tile or batch size)" if "out of memory" in str(exc).lower() else ""
        message = f"model failed on {_describe(windows)}: {type(exc).__name__}: {exc}{hint}"
        raise TileError(message, job.path, windows) from exc
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != expected:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        message = (
            f"model returned {got} for input {tuple(x.shape)} on {_describe(windows)}; "
            f"expected {expected} (is scale={job.scale} right for this model?)"
        )
        raise TileError(message, job.path, windows)
    y = y.detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(y).all()):
        raise TileError(f"model returned NaN or infinite values on {_describe(windows)}", job.path, windows)
    return y.numpy()


def _infer_stripe(
    stripe: np.ndarray, y0: int, grid: TileGrid, job: _Job, bar: tqdm
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(x0, output (C, th*s, tw*s))`` for each tile of the stripe starting at LR row ``y0``."""
    s, th, tw = job.scale, grid.tile_h, grid.tile_w
    items = [(x0, g) for x0 in grid.xs for g in job.groups]
    outputs: dict[int, np.ndarray] = {}
    missing = dict.fromkeys(grid.xs, len(job.groups))
    for start in range(0, len(items), job.batch_size):
        batch = items[start : start + job.batch_size]
        arrays = [stripe[g, :, x0 : x0 + tw] for x0, g in batch]
        windows = [Window(x0, y0, tw, th) for x0, _ in batch]
        result = _call_model(job, arrays, windows)
        for (x0, g), out in zip(batch, result, strict=True):
            buffer = outputs.setdefault(x0, np.empty((job.channels, th * s, tw * s), np.float32))
            buffer[g] = out if g.stop - g.start == 3 else out.mean(axis=0, keepdims=True)
            missing[x0] -= 1
            if not missing[x0]:
                yield x0, outputs.pop(x0)
        bar.update(len(batch))


def _run_stripes(
    grid: TileGrid,
    job: _Job,
    read_stripe: Callable[[int], np.ndarray],
    emit: Callable[[int, int, np.ndarray], None],
    bar: tqdm,
) -> None:
    """Process the grid stripe by stripe.

    ``read_stripe(y0)`` returns the normalised LR rows ``[y0, y0 + tile_h)`` as float32
    (C, tile_h, width); ``emit(r0, r1, rows)`` receives the finished output rows for
    LR rows ``[r0, r1)``, i.e. (C, (r1 - r0) * scale, width * scale), top to bottom.
    """
    s = job.scale
    blender = _StripeBlender(job.channels, grid.width * s, grid.tile_h * s)
    wx = {
        x0: feather_ramp(grid.tile_w * s, grid.overlap * s, x0 > 0, x0 + grid.tile_w < grid.width)
        for x0 in grid.xs
    }
    for i, y0 in enumerate(grid.ys):
        stripe = read_stripe(y0)
        wy = feather_ramp(grid.tile_h * s, grid.overlap * s, y0 > 0, y0 + grid.tile_h < grid.height)
        for x0, out in _infer_stripe(stripe, y0, grid, job, bar):
            blender.add(out, wy[:, None] * wx[x0][None, :], y0 * s, x0 * s)
        bottom = grid.ys[i + 1] if i + 1 < len(grid.ys) else grid.height
        top = blender.top // s
        emit(top, bottom, blender.pop(bottom * s))


def _check_options(scale: int, tile: int, overlap: int, batch_size: int) -> None:
    for name, value, minimum in (("scale", scale, 1), ("tile", tile, 1), ("overlap", overlap, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise RsgenError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise RsgenError(f"batch_size must be an integer >= 1, got {batch_size!r}")


def _progress(total: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit="tile", disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def tiled_upscale(
    image: torch.Tensor,
    model_fn: ModelFn,
    scale: int,
    tile: int = 128,
    overlap: int = 16,
    batch_size: int = 4,
    progress: bool = False,
) -> torch.Tensor:
    """Upscale an in-memory (3, H, W) float image in [0, 1] tile by tile with blending.

    Returns float32 (3, H*scale, W*scale) on the CPU (not clipped).  Same tiling and
    blending as :func:`upscale_raster`, for images that are already in memory.
    """
    _check_options(scale, tile, overlap, batch_size)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got {tuple(image.shape)}")
    array = image.detach().to("cpu", torch.float32).numpy()
    grid = TileGrid.build(array.shape[2], array.shape[1], tile, overlap)
    job = _Job(model_fn, scale, batch_size, (slice(0, 3),))
    rows: list[np.ndarray] = []
    with _progress(grid.n_tiles, "tiles", progress) as bar:
        _run_stripes(
            grid,
            job,
            lambda y0: array[:, y0 : y0 + grid.tile_h],
            lambda _r0, _r1, out: rows.append(out),
            bar,
        )
    return torch.from_numpy(np.concatenate(rows, axis=1))


def upscale_array(
    array: np.ndarray,
    model_fn: ModelFn,
    scale: int,
    tile: int = 128,
    overlap: int = 16,
    batch_size: int = 4,
    progress: bool = False,
) -> np.ndarray:
    """Upscale an (H, W, 3) uint8 RGB array in memory with :func:`tiled_upscale`.

    Returns (H*scale, W*scale, 3) uint8 (model output clipped to [0, 1], rounded).
    """
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {array.dtype} {array.shape}")
    image = torch.tensor(array).permute(2, 0, 1).float() / 255  # a copy: read-only arrays are fine
    out = tiled_upscale(image, model_fn, scale, tile, overlap, batch_size, progress)
    return out.clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


# --------------------------------------------------------------------------- band and value policy


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


def _finish_rows(
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


class _RowCache:
    """Raw LR rows of the current stripes, kept for the nodata mask and alpha bands."""

    def __init__(self) -> None:
        self.top = 0
        self._rows: np.ndarray | None = None

    def put(self, y0: int, raw: np.ndarray) -> None:
        if self._rows is None:
            self.top, self._rows = y0, raw
            return
        bottom = self.top + self._rows.shape[1]
        self._rows = np.concatenate([self._rows, raw[:, bottom - y0 :]], axis=1)

    def take(self, r0: int, r1: int) -> np.ndarray:
        assert self._rows is not None and r0 == self.top
        rows, self._rows = self._rows[:, : r1 - r0], self._rows[:, r1 - r0 :]
        self.top = r1
        return rows


# --------------------------------------------------------------------------- entry point


def upscale_raster(
    src: str | Path,
    dst: str | Path,
    model_fn: ModelFn,
    scale: int,
    tile: int = 128,
    overlap: int = 16,
    batch_size: int = 4,
    progress: bool = True,
    min_size: int = 2,
) -> RasterInfo:
    """Upscale the raster ``src`` by ``scale`` with ``model_fn`` and write it to ``dst``.

    ``model_fn`` maps float32 (N, 3, h, w) CPU tensors in [0, 1] to
    (N, 3, h*scale, w*scale); it is called under ``torch.inference_mode()`` on
    batches of up to ``batch_size`` LR tiles of ``tile`` px overlapping by
    ``overlap`` px, blended without seams.  The output format follows ``dst``'s
    suffix (.tif/.tiff GeoTIFF written by row windows; .png/.jpg/.jpeg assembled in
    memory).  CRS, nodata, band roles and tags are kept and the pixel size is divided
    by ``scale``.  ``dst`` appears only when complete; on any error no output or
    temporary file is left.

    Returns the :class:`RasterInfo` of the written output.  Raises
    :class:`RsgenError` for invalid input, options or output, and :class:`TileError`
    (an RsgenError naming the file and LR tile window) when the model fails.
    """
    _check_options(scale, tile, overlap, batch_size)
    src, dst = Path(src), Path(dst)
    with open_raster(src, min_size=min_size) as source:
        if dst.exists() and dst.resolve() == src.resolve():
            raise RsgenError("output would overwrite the input", dst)
        info = source.info
        plan = plan_bands(info)
        norm = fit_normalizer(source, plan)
        grid = TileGrid.build(info.width, info.height, tile, overlap)
        job = _Job(model_fn, scale, batch_size, plan.channel_slices(), src)
        cache = _RowCache()

        def read_stripe(y0: int) -> np.ndarray:
            raw = source.read(Window(0, y0, info.width, grid.tile_h))
            cache.put(y0, raw)
            return norm.forward(raw)

        with open_writer(dst, scaled_spec(info, source.metadata, scale)) as writer:

            def emit(r0: int, r1: int, rows: np.ndarray) -> None:
                writer.write_rows(_finish_rows(rows, cache.take(r0, r1), plan, norm, scale, info.dtype))

            with _progress(grid.n_tiles * len(plan.groups), src.name, progress) as bar:
                _run_stripes(grid, job, read_stripe, emit, bar)
            return writer.commit()
