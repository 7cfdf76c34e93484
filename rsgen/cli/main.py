"""The ``rsgen`` command: a thin layer over the Python API.

Every user mistake surfaces as one line ``error: <file or option>: <problem>`` on stderr,
without a traceback: exit code 1 for bad files, models and values, 2 for command-line usage
errors (unknown option, value of the wrong type). ``--json`` prints one JSON document on
stdout for scripting.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from rsgen.errors import RsgenError

app = typer.Typer(
    name="rsgen",
    help="Generative remote sensing imagery: super-resolution of images and GeoTIFF scenes, "
    "an offline remote-sensing image-text model (RS-CLIP) and generative metrics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
eval_app = typer.Typer(help="Evaluate models against their baselines.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")
from rsgen.cli.metrics_commands import register  # noqa: E402

register(eval_app)

SCALES = (2, 4)
OUTPUT_FORMATS = ("tif", "tiff", "png", "jpg", "jpeg")


def check_scale(scale: int) -> int:
    """``scale`` if it is a supported factor, else a one-line error naming ``--scale``."""
    if scale not in SCALES:
        raise RsgenError(f"--scale must be 2 or 4, got {scale}")
    return scale


def check_format(format: str | None) -> str | None:
    """The output suffix (``".tif"``) for ``--format``, or None to keep each input's."""
    if format is None:
        return None
    name = format.lower().lstrip(".")
    if name not in OUTPUT_FORMATS:
        raise RsgenError(f"--format must be one of {', '.join(OUTPUT_FORMATS)}, got {format!r}")
    return "." + name


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, allow_nan=False))


def default_data(*parts: str) -> Path:
    from rsgen.data.paths import default_data_root

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
    tile: Annotated[
        int | None, typer.Option(min=1, help="LR tile size in pixels [default: 256 / scale].")
    ] = None,
    overlap: Annotated[int, typer.Option(min=0, help="LR overlap between tiles, blended.")] = 16,
    batch_size: Annotated[int, typer.Option(min=1, help="Tiles per forward pass.")] = 4,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1... [default: cuda if available]")
    ] = None,
    format: Annotated[
        str | None,
        typer.Option("--format", help="Folder mode: output suffix (tif, png, jpg) [default: keep]"),
    ] = None,
    bf16: Annotated[
        bool, typer.Option("--bf16", help="bfloat16 autocast (fast on CPUs with avx512_bf16/AMX, and GPUs).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
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
        bf16=bf16,
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


@eval_app.command("sr")
def eval_sr_command(
    data: Annotated[
        Path | None, typer.Option(help="Folder of HR images [default: $RSGEN_DATA/RSSCN7/val]")
    ] = None,
    scale: Annotated[int, typer.Option("--scale", "-s", help="2 or 4.")] = 4,
    model: Annotated[
        str | None, typer.Option(help="Built-in model name or folder [default: degan-x<scale>]")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Evaluate only the first N images.")] = None,
    tile: Annotated[int | None, typer.Option(min=1, help="LR tile size [default: 256 / scale].")] = None,
    overlap: Annotated[int, typer.Option(min=0, help="LR tile overlap.")] = 16,
    device: Annotated[str | None, typer.Option(help="cpu, cuda...")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    bf16: Annotated[
        bool, typer.Option("--bf16", help="bfloat16 autocast (fast on CPUs with avx512_bf16/AMX, and GPUs).")
    ] = False,
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
        model or f"degan-x{scale}", scale=scale, device=device, tile=tile, overlap=overlap, bf16=bf16
    )
    result = evaluate_sr(files, scale, resolver, resolver.name, progress=not (quiet or as_json))
    if as_json:
        emit_json({**result.to_dict(), "data": str(folder)})
    else:
        print_sr_table(result)


@eval_app.command("retrieval")
def eval_retrieval_command(
    data: Annotated[
        Path | None,
        typer.Option(help="Folder with captions.jsonl + images/ [default: $RSGEN_DATA/rsicd_aid150]"),
    ] = None,
    split: Annotated[str, typer.Option(help="Which records of captions.jsonl (its 'split' field).")] = "test",
    model: Annotated[
        str, typer.Option(help="Image-text model: rs-clip, a model folder, or an open_clip weight file.")
    ] = "rs-clip",
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    device: Annotated[str | None, typer.Option(help="cpu, cuda... [default: cuda if available]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object, not a table.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Text->image and image->text Recall@1/5/10 and zero-shot scene accuracy (fractions in [0, 1])."""
    from rsgen.data.captions import read_caption_records
    from rsgen.device import resolve_device
    from rsgen.metrics.retrieval import evaluate_retrieval
    from rsgen.models.image_text import load_image_text_model

    folder = data or default_data("rsicd_aid150")
    read_caption_records(folder, split)  # bad data fails before a model loads
    clip = load_image_text_model(model, resolve_device(device))
    result = evaluate_retrieval(clip, folder, split, batch_size, progress=not (quiet or as_json))
    report = {**result.to_dict(), "data": str(folder)}
    if as_json:
        emit_json(report)
        return
    counts = f"{result.n_images} images, {result.n_captions} captions"
    typer.echo(f"{result.model} on {folder} ({split}: {counts})")
    for direction in ("t2i", "i2t"):
        recalls = "  ".join(f"R@{k} {report[f'{direction}_r{k}']:.3f}" for k in (1, 5, 10))
        typer.echo(f"  {direction}: {recalls}")
    typer.echo(f"  zero-shot accuracy over {result.n_scenes} scenes: {result.zeroshot_acc:.3f}")


@eval_app.command("scene")
def eval_scene_command(
    data: Annotated[
        Path | None,
        typer.Option(help="Folder with captions.jsonl + images/ [default: $RSGEN_DATA/rsicd_aid150]"),
    ] = None,
    split: Annotated[str, typer.Option(help="Which records of captions.jsonl (its 'split' field).")] = "test",
    model: Annotated[str, typer.Option(help="Scene classifier: rs-scene or a model folder.")] = "rs-scene",
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    device: Annotated[str | None, typer.Option(help="cpu, cuda... [default: cuda if available]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Scene classification accuracy (overall and per scene) of rs-scene on a captions.jsonl split."""
    from rsgen.data.captions import read_caption_records
    from rsgen.device import resolve_device
    from rsgen.metrics.retrieval import evaluate_scene_classifier
    from rsgen.models.scene_classifier import SceneClassifier

    folder = data or default_data("rsicd_aid150")
    read_caption_records(folder, split)  # bad data fails before a model loads
    classifier = SceneClassifier.from_pretrained(model).to(resolve_device(device))
    result = evaluate_scene_classifier(classifier, folder, split, batch_size, progress=not (quiet or as_json))
    if as_json:
        emit_json({**result, "data": str(folder)})
        return
    typer.echo(f"{result['model']} on {folder} ({split}, {result['n_images']} images)")
    typer.echo(f"  accuracy {result['accuracy']:.3f}")
    worst = sorted(result["per_scene"].items(), key=lambda item: item[1])[:5]
    typer.echo("  weakest scenes: " + ", ".join(f"{scene} {acc:.2f}" for scene, acc in worst))


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
    from rsgen.train.distributed import exit_torchrun_worker
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
    exit_torchrun_worker(0)


@app.command("info")
def info_command(
    target: Annotated[
        str, typer.Argument(help="Config name/YAML (degan-paper) or model name/folder (degan-x4).")
    ] = "degan-paper",
    scale: Annotated[int | None, typer.Option(help="Scale for a config [default: the config's].")] = None,
    size: Annotated[int, typer.Option(min=1, help="LR input side for the MAC count.")] = 64,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Parameters and multiply-accumulates (MACs) of a generator and its discriminator."""
    import torch

    from rsgen.models import DEGANConfig, DEGANDiscriminator, DEGANGenerator, DiscriminatorConfig
    from rsgen.models.profile import count_macs, count_parameters

    model_cfg, disc_cfg = _model_configs(target)
    if scale is not None:
        model_cfg["scale"] = check_scale(scale)
    try:
        generator = DEGANGenerator(DEGANConfig.from_dict(model_cfg))
        disc = DEGANDiscriminator(DiscriminatorConfig.from_dict(disc_cfg)) if disc_cfg else None
    except (TypeError, ValueError) as exc:
        raise RsgenError(f"invalid model config: {exc}", target) from exc
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
    if disc is not None:
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
    if disc is not None:
        typer.echo(
            f"  discriminator: {report['discriminator_params'] / 1e6:.3f} M parameters, "
            f"{report['discriminator_macs'] / 1e9:.2f} GMACs on {hr_side}x{hr_side}"
        )


def _model_configs(target: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(generator config, discriminator config or None) from a config or a model folder."""
    from rsgen.checkpoint import read_pretrained_config
    from rsgen.config import load_config
    from rsgen.hub import WEIGHTS_DIR
    from rsgen.pipelines.super_resolution import GENERATOR_NAME

    if Path(target).is_dir() or (WEIGHTS_DIR / target).is_dir():
        folder = Path(target) if Path(target).is_dir() else WEIGHTS_DIR / target
        model = dict(read_pretrained_config(folder)["model"])
        if model.get("name", GENERATOR_NAME) != GENERATOR_NAME:
            raise RsgenError(f"not a super-resolution model (architecture {model['name']!r})", folder)
        return model, None
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
    """Plot the losses and validation numbers of a training run."""
    from rsgen.train.curves import plot_curves

    typer.echo(str(plot_curves(run, output, title=str(run))))


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
    device: Annotated[str | None, typer.Option(help="cpu, cuda... [default: cuda if available]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report on stdout.")] = False,
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


def main() -> None:
    """Console entry point: one-line errors on stderr, no tracebacks for user mistakes."""
    try:
        code = app(standalone_mode=False)
    except RsgenError as exc:
        _fail(str(exc), 1)
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.exit(exc.exit_code)
        _fail(_usage_message(exc), exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        _fail("interrupted", 130)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_message(exc: typer.TyperException) -> str:
    """A click/typer usage error as one line, with a pointer to the command's --help."""
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return exc.format_message() + hint


def _fail(message: str, code: int) -> NoReturn:
    typer.echo("error: " + " ".join(message.splitlines()), err=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
