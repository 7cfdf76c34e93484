"""Upscaling a raster file with a model: read by row stripes, tile, blend, write.

:func:`upscale_raster` ties the parts together: :mod:`rsgen.io.read` opens the input,
:mod:`rsgen.io.bands` decides which bands go through the model and how values are
normalised, :mod:`rsgen.io.tiling` runs the model tile by tile with blending, and
:mod:`rsgen.io.write` writes the output atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rasterio.windows import Window

from rsgen.errors import RsgenError
from rsgen.io.bands import finish_rows, fit_normalizer, plan_bands
from rsgen.io.read import RasterInfo, open_raster
from rsgen.io.tiling import ModelFn, TileGrid, TileJob, check_options, run_stripes, tile_bar
from rsgen.io.write import open_writer, scaled_spec


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
    check_options(scale, tile, overlap, batch_size)
    src, dst = Path(src), Path(dst)
    with open_raster(src, min_size=min_size) as source:
        if dst.exists() and dst.resolve() == src.resolve():
            raise RsgenError("output would overwrite the input", dst)
        info = source.info
        plan = plan_bands(info)
        norm = fit_normalizer(source, plan)
        grid = TileGrid.build(info.width, info.height, tile, overlap)
        job = TileJob(model_fn, scale, batch_size, plan.channel_slices(), src)
        cache = _RowCache()

        def read_stripe(y0: int) -> np.ndarray:
            raw = source.read(Window(0, y0, info.width, grid.tile_h))
            cache.put(y0, raw)
            return norm.forward(raw)

        with open_writer(dst, scaled_spec(info, source.metadata, scale)) as writer:

            def emit(r0: int, r1: int, rows: np.ndarray) -> None:
                writer.write_rows(finish_rows(rows, cache.take(r0, r1), plan, norm, scale, info.dtype))

            with tile_bar(grid.n_tiles * len(plan.groups), src.name, progress) as bar:
                run_stripes(grid, job, read_stripe, emit, bar)
            return writer.commit()
