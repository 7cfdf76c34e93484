"""``rsgen demo``: the main job on a built-in sample, with a comparison against bicubic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsgen.cli.app import DeviceOption, JsonOption, app, check_scale, emit_json


@app.command("demo")
def demo_command(
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the demo files.")] = Path(
        "rsgen-demo"
    ),
    scale: Annotated[int, typer.Option("--scale", "-s", help="Upscaling factor: 2 or 4.")] = 4,
    model: Annotated[
        str | None, typer.Option(help="Built-in model name or model folder [default: degan-x<scale>]")
    ] = None,
    size: Annotated[int, typer.Option(min=8, help="Side of the HR crop of the sample, in pixels.")] = 256,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Super-resolve a sample aerial scene (GeoTIFF in, GeoTIFF out) and compare with bicubic.

    The sample is the first image of $RSGEN_DATA/scenes (scikit-image's astronaut if absent).
    """
    check_scale(scale)
    from rsgen.pipelines.demo import run_demo

    result = run_demo(output, model=model, scale=scale, size=size, device=device)
    if result.note:
        typer.echo(f"note: {result.note}", err=True)
    if as_json:
        emit_json(result.to_dict())
        return
    geo = result.sr_georeferencing
    hr_w, hr_h = result.hr_size
    lr_w, lr_h = result.lr_size
    typer.echo(f"sample:   {result.source} ({hr_w}x{hr_h} px HR, {lr_w}x{lr_h} px LR)")
    typer.echo(f"model:    {result.model} x{result.scale} on {result.device}")
    typer.echo(f"PSNR:     {result.model} {_db(result.psnr_model)}, bicubic {_db(result.psnr_bicubic)}")
    typer.echo(
        f"sr.tif:   {geo['crs']}, {geo['pixel_size'][0]:g} m pixels, "
        f"origin ({geo['transform'][0]:.1f}, {geo['transform'][3]:.1f}), {geo['width']}x{geo['height']} px"
    )
    typer.echo(f"time:     {result.seconds_sr:.2f} s super-resolution, {result.seconds_total:.2f} s total")
    typer.echo(f"written:  {', '.join(Path(p).name for p in result.files.values())} in {result.output_dir}")


def _db(value: float) -> str:
    return f"{value:.2f} dB"
