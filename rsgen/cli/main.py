"""The ``rsgen`` command: a thin layer over the Python API.

Every user mistake surfaces as ``error: <file>: <problem>`` on stderr with exit code 1;
``--json`` prints one JSON document on stdout for scripting.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from rsgen.errors import RsgenError

app = typer.Typer(
    name="rsgen",
    help="Generative remote sensing imagery: DEGAN super-resolution of images and GeoTIFF scenes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
eval_app = typer.Typer(help="Evaluate models against their baselines.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

SCALES = (2, 4)


def check_scale(scale: int) -> int:
    if scale not in SCALES:
        raise RsgenError(f"--scale must be 2 or 4, got {scale}")
    return scale


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, allow_nan=False))


def default_data(*parts: str) -> Path:
    from rsgen.data.sr_dataset import default_data_root

    return default_data_root().joinpath(*parts)


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
    tile: Annotated[int, typer.Option(help="LR tile size in pixels (memory grows with its square).")] = 128,
    overlap: Annotated[int, typer.Option(help="LR overlap between tiles, blended.")] = 16,
    batch_size: Annotated[int, typer.Option(help="Tiles per forward pass.")] = 4,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1... [default: cuda if available]")
    ] = None,
    format: Annotated[
        str | None,
        typer.Option("--format", help="Folder mode: output suffix (tif, png, jpg) [default: keep]"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Super-resolve an image, a GeoTIFF scene (georeferencing kept) or a folder.

    Under torchrun, a folder is split across ranks.
    """
    from rsgen.pipelines import SuperResolver

    check_scale(scale)
    if not input.exists():
        raise RsgenError("input not found", input)
    resolver = SuperResolver.from_pretrained(
        model or f"degan-x{scale}",
        scale=scale,
        device=device,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
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
                "crs": str(info.crs) if info.crs else None,
                "seconds": round(seconds, 3),
            }
        )
        if not as_json:
            typer.echo(f"{src} -> {dst} ({info.width}x{info.height}, {seconds:.1f} s)", err=True)

    if input.is_dir():
        if output.exists() and not output.is_dir():
            raise RsgenError("INPUT is a folder, so OUTPUT must be a folder", output)
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        suffix = "." + format.lower().lstrip(".") if format else None
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


@eval_app.command("sr")
def eval_sr_command(
    data: Annotated[
        Path | None, typer.Option(help="Folder of HR images [default: $RSGEN_DATA/RSSCN7/val]")
    ] = None,
    scale: Annotated[int, typer.Option("--scale", "-s", help="2 or 4.")] = 4,
    model: Annotated[
        str | None, typer.Option(help="Built-in model name or folder [default: degan-x<scale>]")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N images.")] = None,
    tile: Annotated[int, typer.Option(help="LR tile size.")] = 128,
    overlap: Annotated[int, typer.Option(help="LR tile overlap.")] = 16,
    device: Annotated[str | None, typer.Option(help="cpu, cuda...")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """PSNR/SSIM (RGB and Y, border = scale) of a model vs bicubic on HR images downscaled bicubically."""
    from rsgen.io import list_images
    from rsgen.metrics import evaluate_sr, print_sr_table
    from rsgen.pipelines import SuperResolver

    check_scale(scale)
    folder = data or default_data("RSSCN7", "val")
    files = list_images(folder)[:limit]
    resolver = SuperResolver.from_pretrained(
        model or f"degan-x{scale}", scale=scale, device=device, tile=tile, overlap=overlap
    )
    result = evaluate_sr(files, scale, resolver, resolver.name, progress=not (quiet or as_json))
    if as_json:
        emit_json({**result.to_dict(), "data": str(folder)})
    else:
        print_sr_table(result)


@app.command("train")
def train_command(
    config: Annotated[
        str | None,
        typer.Argument(
            help="Built-in config name (degan-cpu, degan-paper, "
            "ablations/degan-cpu-baseline...) or YAML file."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run folder (checkpoints, log, exports).")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override: section.key=value (repeatable).")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Resume the run in this folder from its checkpoint.")
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Stop after this many steps (total, not additional).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda... [default: cuda if available]")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads per process.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Train a model. Works alone or under `torchrun --nproc_per_node=N`, with checkpoints and --resume."""
    from rsgen.config import apply_overrides, load_config, load_config_file
    from rsgen.train.loop import run_training

    if threads:
        import torch

        torch.set_num_threads(threads)
    if resume is not None:
        if config is not None:
            raise RsgenError("give either CONFIG (a new run) or --resume RUN_FOLDER, not both")
        saved = resume / "config.yaml"
        if not saved.is_file():
            raise RsgenError("not a run folder (no config.yaml)", resume)
        cfg = apply_overrides(load_config_file(saved), set_ or [])
        run_dir = resume
    else:
        if config is None or out is None:
            raise RsgenError("a new run needs CONFIG and --out RUN_FOLDER (or --resume RUN_FOLDER)")
        cfg = load_config(config, set_ or [])
        run_dir = out
    summary = run_training(
        cfg, run_dir, resume=resume is not None, max_steps=max_steps, device=device, progress=not quiet
    )
    typer.echo(json.dumps(summary))


@app.command("info")
def info_command(
    target: Annotated[
        str, typer.Argument(help="Config name/YAML (degan-paper) or model name/folder (degan-x4).")
    ] = "degan-paper",
    scale: Annotated[int | None, typer.Option(help="Scale for a config [default: the config's].")] = None,
    size: Annotated[int, typer.Option(help="LR input side for the MAC count.")] = 64,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Parameters and multiply-accumulates (MACs) of a generator and its discriminator."""
    import torch

    from rsgen.models import DEGANConfig, DEGANDiscriminator, DEGANGenerator, DiscriminatorConfig
    from rsgen.models.profile import count_macs, count_parameters

    model_cfg, disc_cfg = _model_configs(target)
    if scale is not None:
        model_cfg["scale"] = check_scale(scale)
    generator = DEGANGenerator(DEGANConfig.from_dict(model_cfg))
    lr = torch.zeros(1, 3, size, size)
    hr_side = size * generator.scale
    report = {
        "target": target,
        "scale": generator.scale,
        "generator_params": count_parameters(generator),
        "generator_macs": count_macs(generator, lr),
        "input": [size, size],
        "output": [hr_side, hr_side],
    }
    if disc_cfg is not None:
        disc = DEGANDiscriminator(DiscriminatorConfig.from_dict(disc_cfg))
        report["discriminator_params"] = count_parameters(disc)
        report["discriminator_macs"] = count_macs(disc, torch.zeros(1, 3, hr_side, hr_side))
    if as_json:
        emit_json(report)
        return
    typer.echo(f"{target} (x{generator.scale})")
    typer.echo(
        f"  generator:     {report['generator_params'] / 1e6:.3f} M parameters, "
        f"{report['generator_macs'] / 1e9:.2f} GMACs for {size}x{size} -> {hr_side}x{hr_side}"
    )
    if disc_cfg is not None:
        typer.echo(
            f"  discriminator: {report['discriminator_params'] / 1e6:.3f} M parameters, "
            f"{report['discriminator_macs'] / 1e9:.2f} GMACs on {hr_side}x{hr_side}"
        )


def _model_configs(target: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(generator config, discriminator config or None) from a config or a model folder."""
    from rsgen.checkpoint import read_pretrained_config
    from rsgen.config import load_config
    from rsgen.hub import WEIGHTS_DIR

    if Path(target).is_dir() or (WEIGHTS_DIR / target).is_dir():
        folder = Path(target) if Path(target).is_dir() else WEIGHTS_DIR / target
        return dict(read_pretrained_config(folder)["model"]), None
    config = load_config(target)
    return dict(config["model"]), dict(config.get("discriminator") or {}) or None


@app.command("models")
def models_command(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the built-in pretrained models and training configs."""
    from rsgen.config import builtin_config_names
    from rsgen.hub import available_models

    data = {"models": available_models(), "configs": builtin_config_names()}
    if as_json:
        emit_json(data)
    else:
        typer.echo("models:  " + ", ".join(data["models"]))
        typer.echo("configs: " + ", ".join(data["configs"]))


@app.command("curves")
def curves_command(
    run: Annotated[Path, typer.Argument(help="Run folder or log.jsonl.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG file to write.")] = Path("curves.png"),
) -> None:
    """Plot the losses and validation PSNR of a training run."""
    from rsgen.train.curves import plot_curves

    typer.echo(str(plot_curves(run, output, title=str(run))))


def main() -> None:
    """Console entry point: one-line errors, no tracebacks for user mistakes."""
    try:
        app()
    except RsgenError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
