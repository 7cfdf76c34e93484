"""``rsgen sr``: super-resolve an image, a GeoTIFF scene or a folder."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from rsgen.cli.app import (
    DeviceOption,
    JsonOption,
    PrecisionOption,
    QuietOption,
    app,
    check_format,
    check_scale,
    emit_json,
)
from rsgen.errors import RsgenError


@app.command("sr")
def sr_command(
    input: Annotated[Path, typer.Argument(help="Image file (PNG/JPEG/TIFF/GeoTIFF) or folder of images.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Output file, or folder when INPUT is a folder.")
    ],
    scale: Annotated[int, typer.Option("--scale", "-s", help="Upscaling factor: 2 or 4.")] = 4,
    model: Annotated[
        str | None, typer.Option(help="Built-in model name or model folder [default: degan-x<scale>]")
    ] = None,
    tile: Annotated[
        int | None, typer.Option(min=1, help="LR tile size in pixels [default: 256 / scale].")
    ] = None,
    overlap: Annotated[
        int,
        typer.Option(
            min=0,
            help="LR overlap between tiles, blended (see docs/raster-io.md for the measured seams).",
        ),
    ] = 4,
    batch_size: Annotated[int, typer.Option(min=1, help="Tiles per forward pass.")] = 4,
    device: DeviceOption = None,
    format: Annotated[
        str | None,
        typer.Option("--format", help="Folder mode: output suffix (tif, png, jpg) [default: keep]"),
    ] = None,
    precision: PrecisionOption = "auto",
    max_output: Annotated[
        float,
        typer.Option(
            min=0, help="Refuse files whose output would exceed this many gigapixels (0: no limit)."
        ),
    ] = 2.0,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Super-resolve an image, a GeoTIFF scene (georeferencing kept) or a folder.

    Under torchrun, a folder is split across ranks.
    """
    check_scale(scale)
    suffix = check_format(format)
    if not input.exists():
        raise RsgenError("input not found", input)
    if input.is_dir() and output.exists() and not output.is_dir():
        raise RsgenError("INPUT is a folder, so OUTPUT must be a folder", output)
    if suffix and not input.is_dir():
        raise RsgenError("--format is for folder input; for one file the suffix of OUTPUT picks the format")
    from rsgen.pipelines import SuperResolver

    resolver = SuperResolver.from_pretrained(
        model or f"degan-x{scale}",
        scale=scale,
        device=device,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        bf16=precision,
        max_output_pixels=int(max_output * 1e9) if max_output > 0 else None,
    )
    report: list[dict[str, Any]] = []

    def record(src: Path, dst: Path, info: Any, seconds: float) -> None:
        report.append(
            {
                "input": str(src),
                "output": str(dst),
                "width": info.width,
                "height": info.height,
                "bands": info.count,
                "dtype": str(info.dtype),
                "scale": scale,
                "precision": "bf16" if resolver.bf16 else "fp32",
                **tiling_of(info.width, info.height, resolver.tile, resolver.overlap),
                "crs": str(info.crs) if info.crs else None,
                "seconds": round(seconds, 3),
            }
        )
        if not as_json:
            typer.echo(f"{src} -> {dst} ({info.width}x{info.height}, {seconds:.1f} s)", err=True)

    if input.is_dir():
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        clock = [time.perf_counter()]

        def done(src: Path, dst: Path, info: Any) -> None:
            record(src, dst, info, time.perf_counter() - clock[0])
            clock[0] = time.perf_counter()

        resolver.upscale_folder(input, output, suffix, rank, world, progress=not quiet, on_done=done)
    else:
        start = time.perf_counter()
        info = resolver.upscale_file(input, output, progress=not quiet)
        record(input, output, info, time.perf_counter() - start)
    if as_json:
        emit_json({"model": resolver.name, "device": str(resolver.device), "results": report})


def tiling_of(width: int, height: int, tile: int, overlap: int) -> dict[str, Any]:
    """The tile layout of a ``width`` x ``height`` input, for the JSON report."""
    from rsgen.io.tiling import TileGrid

    grid = TileGrid.build(width, height, tile, overlap)
    return {"tiles": grid.n_tiles, "recomputed_share": round(grid.recomputed_share, 4)}
