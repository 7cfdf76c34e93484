"""``rsgen demo``: generate, super-resolve and edit built-in samples; writes a web page of it all."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rsgen.cli.app import DeviceOption, JsonOption, app, check_scale, emit_json

if TYPE_CHECKING:
    from rsgen.pipelines.demo_report import StepReport


@app.command("demo")
def demo_command(
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the demo files.")] = Path(
        "rsgen-demo"
    ),
    scale: Annotated[int, typer.Option("--scale", "-s", help="Upscaling factor: 2 or 4.")] = 4,
    model: Annotated[
        str | None,
        typer.Option(help="Super-resolution model: built-in name or folder [default: degan-x<scale>]"),
    ] = None,
    size: Annotated[
        int, typer.Option(min=8, help="Side of the HR crop of the georeferenced sample, in pixels.")
    ] = 256,
    t2i_model: Annotated[
        str | None,
        typer.Option(help="Text-to-image pipeline folder [default: the shipped rsvq-cpu; skipped if absent]"),
    ] = None,
    editor_model: Annotated[
        str, typer.Option(help="Editor folder trained on the forest sample (built-in name or folder).")
    ] = "editor-forest-256",
    seed: Annotated[int, typer.Option(min=0, help="Seed of the generated scenes and of the edit.")] = 0,
    quick: Annotated[
        bool,
        typer.Option("--quick", help="Smoke run in seconds: 2 sampling steps, a 1-step, 1-view edit."),
    ] = False,
    device: DeviceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Generate scenes from 4 prompts, super-resolve one, edit a shipped forest scene inside an
    ROI, and super-resolve a georeferenced scene (GeoTIFF in, GeoTIFF out, PSNR vs bicubic).

    Writes index.html (open it in a browser), contact_sheet.png and demo.json into the output
    folder. Everything it needs ships with rsgen; progress goes to stderr.
    """
    check_scale(scale)
    from rsgen.pipelines.demo import QUICK_EDIT, DemoOptions, run_demo

    options = DemoOptions(
        output_dir=output,
        sr_model=model,
        scale=scale,
        size=size,
        device=device,
        t2i_model=t2i_model,
        seed=seed,
        editor_model=editor_model,
        progress=not quick,
    )
    if quick:
        options.t2i_steps, options.edit_settings = 2, QUICK_EDIT
    result = run_demo(options, log=lambda line: typer.echo(line, err=True))
    if as_json:
        emit_json(result.to_dict())
        return
    for step in result.steps:
        typer.echo(_summary(step))
    typer.echo(f"total:    {result.seconds_total:.1f} s on {result.device}")
    typer.echo(f"open:     {Path(result.output_dir) / 'index.html'}")


def _summary(step: StepReport) -> str:
    """One line per step for the terminal."""
    name, settings, scores, s = step.name, step.settings, step.scores, step.seconds
    label = f"{name + ':':<9} "
    if step.skipped:
        return f"{label}skipped ({step.skipped})"
    if name == "generate":
        w, h = settings["size"]
        return f"{label}{len(settings['prompts'])} scenes {w}x{h} px, {settings['steps']} steps, {s:.1f} s"
    if name == "upscale":
        w, h = settings["output_size"]
        return f"{label}{settings['model']} x{settings['scale']} -> {w}x{h} px, {s:.1f} s"
    if name == "edit":
        clip = scores["clip_score"].get("rs-clip") or {}
        score = f"CLIP {clip['before']:.1f} -> {clip['after']:.1f}" if clip else "no CLIP score"
        return f"{label}{settings['prompt']!r} in ROI {settings['roi']}, {score}, {s:.1f} s"
    geo = scores["sr_georeferencing"]
    return (
        f"{label}{settings['model']} x{settings['scale']}: PSNR {_db(scores['psnr_model'])}, "
        f"bicubic {_db(scores['psnr_bicubic'])}; sr.tif {geo['crs']}, {geo['pixel_size'][0]:g} m pixels, "
        f"{s:.1f} s"
    )


def _db(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} dB"
