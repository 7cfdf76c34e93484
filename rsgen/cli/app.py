"""The ``rsgen`` command's shared parts: the typer apps and the helpers every command uses.

Commands live one file per topic (``sr``, ``evaluate``, ``training``, ``info``, ``demo``) and
register on :data:`app` / :data:`eval_app`; :mod:`rsgen.cli.main` imports them and runs the app.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from rsgen.errors import RsgenError

app = typer.Typer(
    name="rsgen",
    help="Generative remote sensing imagery: super-resolution of images and GeoTIFF scenes, "
    "text-to-image generation (RSVQ-Diffusion), an offline remote-sensing image-text model "
    "(RS-CLIP) and generative metrics.",
    no_args_is_help=True,
    # Plain help: rich markup would eat every [default: ...] and [x>=1] of the option texts.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,
)


eval_app = typer.Typer(
    help="Evaluate models against their baselines.", no_args_is_help=True, rich_markup_mode=None
)


app.add_typer(eval_app, name="eval")

# Options several commands share, declared once so they read and behave the same everywhere.
DeviceOption = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1... [default: cuda if available]")]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout (progress: stderr).")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
Precision = Literal["auto", "fp32", "bf16"]
PrecisionOption = Annotated[
    Precision,
    typer.Option(
        "--precision",
        help="fp32; bf16 (bfloat16 autocast, ~2x faster where the CPU has avx512_bf16/AMX, "
        "emulated and slow elsewhere); auto: bf16 only where it runs natively.",
    ),
]
ImageBatchOption = Annotated[int, typer.Option(min=1, help="Images per forward pass.")]
# Text-to-image sampling (`rsgen generate`, `rsgen eval t2i`).
StepsOption = Annotated[
    int | None, typer.Option(help="Sampling steps [default: 25, or the model's timesteps if fewer].")
]
GuidanceOption = Annotated[
    float, typer.Option(help="Classifier-free guidance scale (1: none, 0: unconditional).")
]
TruncationOption = Annotated[
    float | None, typer.Option(help="Keep the likeliest codes up to this probability, (0, 1].")
]
CaptionDataOption = Annotated[
    Path | None, typer.Option(help="Folder with captions.jsonl + images/ [default: $RSGEN_DATA/rsicd_aid150]")
]
SplitOption = Annotated[str, typer.Option(help="Which records of captions.jsonl (its 'split' field).")]


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
