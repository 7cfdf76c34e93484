"""``SuperResolver``: what users call to super-resolve images, files, folders and scenes.

>>> sr = SuperResolver.from_pretrained("degan-x4")
>>> big = sr(Image.open("tile.png"))                 # PIL in -> PIL out (numpy works too)
>>> sr.upscale_file("scene.tif", "scene_x4.tif")     # GeoTIFF in -> GeoTIFF out, tiled

A one-component :class:`~rsgen.pipelines.base.Pipeline`: a DEGAN generator from
:mod:`rsgen.models` (a plain model folder, or a pipeline folder with ``generator/``) and the
tiled raster I/O of :mod:`rsgen.io`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from rsgen.checkpoint import CONFIG_NAME, read_component_config
from rsgen.errors import RsgenError
from rsgen.io import RasterInfo, list_images, read_raster_info, upscale_array, upscale_raster
from rsgen.io.write import check_output, scaled_spec
from rsgen.models import DEGANGenerator
from rsgen.pipelines.base import MODEL_INDEX_NAME, Pipeline, as_rgb_array
from rsgen.shipped import resolve_model_path

DEFAULT_MODEL = "degan-x4"
# Default HR tile side: 4096 bottleneck tokens. Measured on 2 CPU cores (degan-cpu, x4), a
# 64 px LR tile is ~6x faster per image than a 128 px one, whose attention dominates.
HR_TILE = 256
#: Outputs larger than this (2 gigapixels: an 11,000 px square scene at x4) are refused unless
#: the limit is raised: a huge, sparse GeoTIFF is small on disk and would run for days.
MAX_OUTPUT_PIXELS = 2_000_000_000
#: The throughput the refusal's time estimate assumes: what x4 on 2 CPU cores reached end to end
#: (overlap, blending and I/O included; benchmarks/results-2026-12-04.md).
ESTIMATE_FLOPS = 50e9
GENERATOR_NAME = "degan_generator"


class SuperResolver(Pipeline):
    """Tiled super-resolution with a DEGAN generator.

    Args:
        generator: the network (eval mode is set here).
        device: ``"cpu"``, ``"cuda"``...; CUDA when available if None.
        tile: LR tile side in pixels; default ``HR_TILE // scale`` (a 256 px HR tile). The
            bottleneck Transformer attends over (tile*scale/4)^2 tokens, so its cost grows
            with the square of the tile area: bigger tiles are slower, not faster.
        overlap: LR pixels shared by neighbouring tiles, blended with linear ramps.
        batch_size: tiles per forward pass.
        channels_last: use the channels-last memory format (faster convolutions on some CPUs).
        bf16: run the generator under bfloat16 autocast: True / ``"bf16"``, False / ``"fp32"``
            (the default), or ``"auto"`` (what ``rsgen sr`` uses: on where the CPU or GPU runs
            bf16 natively). On CPUs with bf16 instructions (avx512_bf16/AMX) it is ~2x faster for
            the same PSNR to 1e-3 dB (see benchmarks/); without them it is emulated and far slower.
        name: shown in evaluation tables and JSON.
        progress: show progress bars for files and folders (default of their ``progress``).
        max_output_pixels: files whose output would be larger are refused before any work
            (RsgenError with a time estimate); None: no limit.
    """

    pipeline_name = "super_resolution"
    component_classes = {"generator": DEGANGenerator}

    def __init__(
        self,
        generator: DEGANGenerator,
        device: str | torch.device | None = None,
        tile: int | None = None,
        overlap: int = 4,
        batch_size: int = 4,
        channels_last: bool = False,
        bf16: bool | str = False,
        name: str = "custom",
        progress: bool = True,
        max_output_pixels: int | None = MAX_OUTPUT_PIXELS,
    ) -> None:
        super().__init__(device, bf16, progress)
        self.max_output_pixels = max_output_pixels
        self.generator = self.place(generator.float())
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.generator = self.generator.to(memory_format=torch.channels_last)
        self.tile = tile or max(HR_TILE // self.generator.scale, 16)
        self.overlap, self.batch_size, self.name = overlap, batch_size, name

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path = DEFAULT_MODEL, scale: int | None = None, **kwargs: Any
    ) -> SuperResolver:
        """Load a shipped model by name or a saved folder; ``scale`` (if given) must match it."""
        path = resolve_model_path(name_or_path)
        _check_model_config(path / "generator" if (path / MODEL_INDEX_NAME).is_file() else path, scale)
        kwargs.setdefault("name", Path(str(name_or_path)).name)
        return super().from_pretrained(path, **kwargs)

    @classmethod
    def from_config(cls, config: dict[str, Any], **kwargs: Any) -> SuperResolver:
        """A randomly initialised generator from a ``model:`` config section (benchmarks, tests)."""
        return cls(DEGANGenerator.from_config(config), **kwargs)

    @property
    def scale(self) -> int:
        return self.generator.scale

    @torch.inference_mode()
    def upscale_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) float in [0, 1] -> (N, 3, h*s, w*s) in [0, 1] on the CPU, one forward pass."""
        x = x.to(self.device, torch.float32).contiguous(memory_format=self.memory_format)
        with self.autocast():
            y = self.generator(x * 2 - 1)
        return ((y.float() + 1) / 2).clamp(0, 1).cpu()

    def __call__(self, image: Image.Image | np.ndarray, progress: bool = False) -> Image.Image | np.ndarray:
        """Super-resolve an RGB image (PIL, or uint8 array H x W x 3), tiled; returns the same type."""
        is_pil = isinstance(image, Image.Image)
        array = as_rgb_array(image)
        out = upscale_array(
            array,
            self.upscale_tensor,
            self.scale,
            self.tile,
            self.overlap,
            self.batch_size,
            progress=progress,
        )
        return Image.fromarray(out) if is_pil else out

    def upscale_file(self, src: str | Path, dst: str | Path, progress: bool | None = None) -> RasterInfo:
        """Super-resolve one raster file (GeoTIFF keeps its georeferencing), atomically."""
        self.check_work(src, read_raster_info(src))
        return upscale_raster(
            src,
            dst,
            self.upscale_tensor,
            self.scale,
            tile=self.tile,
            overlap=self.overlap,
            batch_size=self.batch_size,
            progress=self.progress if progress is None else progress,
        )

    def check_work(self, path: str | Path, info: RasterInfo) -> None:
        """RsgenError (naming ``path``, with a rough time estimate) when the output of ``info``
        would exceed :attr:`max_output_pixels`."""
        width, height = info.width * self.scale, info.height * self.scale
        if self.max_output_pixels is None or width * height <= self.max_output_pixels:
            return
        seconds = width * height * self.macs_per_output_pixel() * 2 / ESTIMATE_FLOPS
        duration = f"{seconds / 3600:,.0f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"
        raise RsgenError(
            f"the x{self.scale} output would be {width}x{height} px ({_pixels(width * height)}, roughly "
            f"{duration} at {ESTIMATE_FLOPS / 1e9:.0f} GFLOP/s); crop the scene, or raise the limit of "
            f"{_pixels(self.max_output_pixels)} (--max-output, in gigapixels)",
            path,
        )

    def macs_per_output_pixel(self) -> float:
        """Multiply-accumulates of the generator per output pixel, on one tile (overlap excluded)."""
        from rsgen.models.profile import count_macs

        side = self.tile
        tile = torch.zeros(1, 3, side, side, device=self.device)
        return count_macs(self.generator, tile) / (side * self.scale) ** 2

    def upscale_folder(
        self,
        src: str | Path,
        dst_dir: str | Path,
        suffix: str | None = None,
        rank: int = 0,
        world_size: int = 1,
        progress: bool | None = None,
        on_done: Callable[[Path, Path, RasterInfo], None] | None = None,
        check_first: bool = True,
    ) -> list[Path]:
        """Super-resolve every image under ``src`` into ``dst_dir``, keeping file stems and
        sub-folders; ``suffix`` (e.g. ``".tif"``) changes the output format.

        With ``world_size > 1`` this rank takes every ``world_size``-th file. With
        ``check_first`` every input of this rank is opened and validated, and its output
        checked against its format, before any is processed: one RsgenError names every bad
        file (the first few, and how many) before any output is written. Returns the
        written files.
        """
        jobs = plan_folder(src, dst_dir, suffix, rank, world_size)
        if check_first:
            check_jobs(jobs, self.scale, self.check_work)
        written = []
        for path, out in jobs:
            info = self.upscale_file(path, out, progress=progress)
            written.append(out)
            if on_done is not None:
                on_done(path, out, info)
        return written


def _pixels(count: int) -> str:
    return f"{count / 1e9:.1f} gigapixels" if count >= 100_000_000 else f"{count / 1e6:.2f} megapixels"


def check_jobs(
    jobs: list[tuple[Path, Path]],
    scale: int,
    check_work: Callable[[Path, RasterInfo], None] | None = None,
    shown: int = 3,
) -> None:
    """Open every input, check its output's format and (with ``check_work``) its size; one
    RsgenError naming every problem."""
    problems = []
    for path, out in jobs:
        try:
            info = read_raster_info(path)
            if check_work is not None:
                check_work(path, info)
            check_output(out, scaled_spec(info, {}, scale))
        except RsgenError as exc:
            problems.append(str(exc))
    if len(problems) == 1:
        raise RsgenError(problems[0])
    if problems:
        more = f"; and {len(problems) - shown} more" if len(problems) > shown else ""
        raise RsgenError(
            f"{len(problems)} of {len(jobs)} files cannot be processed: " + "; ".join(problems[:shown]) + more
        )


def plan_folder(
    src: str | Path, dst_dir: str | Path, suffix: str | None = None, rank: int = 0, world_size: int = 1
) -> list[tuple[Path, Path]]:
    """(input, output) pairs of this rank for :meth:`SuperResolver.upscale_folder`.

    Images already under ``dst_dir`` (an output folder inside the input folder) are
    skipped; two inputs that would write the same output raise RsgenError.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise RsgenError(f"rank must be in [0, world_size), got rank {rank} of {world_size}")
    src, dst_dir = Path(src), Path(dst_dir)
    if src.is_file():
        raise RsgenError("expected a folder of images", src)
    outputs: dict[Path, Path] = {}
    for path in list_images(src):
        if path.resolve().is_relative_to(dst_dir.resolve()):
            continue
        out = dst_dir / path.relative_to(src).parent / (path.stem + (suffix or path.suffix))
        if out in outputs:
            raise RsgenError(f"{outputs[out]} and {path} would both be written to this file", out)
        outputs[out] = path
    if not outputs:
        raise RsgenError("folder contains no images outside the output folder", src)
    return [(path, out) for out, path in outputs.items()][rank::world_size]


def _check_model_config(path: Path, scale: int | None) -> None:
    """Reject a model folder of another architecture or scale before reading its weights."""
    model = read_component_config(path)["model"]
    name = model.get("name")
    if name != GENERATOR_NAME:
        raise RsgenError(
            f"not a super-resolution model (architecture {name!r}, expected {GENERATOR_NAME!r})",
            path / CONFIG_NAME,
        )
    if scale is not None and "scale" in model and model["scale"] != scale:
        raise RsgenError(f"model is for x{model['scale']}, not x{scale}", path)
