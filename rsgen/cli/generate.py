"""``rsgen generate``: remote-sensing images from text with a text-to-image pipeline."""

from __future__ import annotations

import re
import secrets
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from rsgen.cli.app import (
    DeviceOption,
    GuidanceOption,
    JsonOption,
    PrecisionOption,
    QuietOption,
    StepsOption,
    TruncationOption,
    app,
    emit_json,
)
from rsgen.errors import RsgenError
from rsgen.files import atomic_file, write_json

DEFAULT_MODEL = "rsvq-cpu"  # = rsgen.pipelines.text_to_image.DEFAULT_MODEL (not imported: startup time)
UPSCALES = (2, 4)


@app.command("generate")
def generate_command(
    prompt: Annotated[str | None, typer.Argument(help="What to draw (or use --prompts FILE).")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Output folder (required).")] = None,
    num_images: Annotated[int, typer.Option("-n", "--num-images", help="Images per prompt.")] = 1,
    seed: Annotated[int | None, typer.Option(help="Random seed [default: a random one, reported].")] = None,
    steps: StepsOption = None,
    guidance: GuidanceOption = 5.0,
    truncation: TruncationOption = None,
    upscale: Annotated[
        int | None, typer.Option(help="Super-resolve each image x2 or x4 (degan-x2 / degan-x4).")
    ] = None,
    upscale_model: Annotated[
        str | None, typer.Option(help="Super-resolution model name or folder [default: degan-x<upscale>].")
    ] = None,
    prompts: Annotated[Path | None, typer.Option(help="Text file with one prompt per line.")] = None,
    model: Annotated[
        str, typer.Option(help="Built-in text-to-image model name or pipeline folder.")
    ] = DEFAULT_MODEL,
    device: DeviceOption = None,
    precision: PrecisionOption = "fp32",
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Generate images from text: OUT/<prompt>_<seed>_<i>.png (+ grid.png when -n > 1) and a JSON
    sidecar per prompt with the settings that reproduce it."""
    from rsgen.pipelines.text_to_image import (
        check_generation_options,
        check_pipeline_folder,
        resolve_text_to_image_model,
    )

    # --- every check before any model loads or any file is written
    texts = _read_prompts(prompt, prompts)
    if output is None:
        raise RsgenError("missing the output folder: -o OUT_DIR")
    if output.exists() and not output.is_dir():
        raise RsgenError("output must be a folder", output)
    if upscale is not None and upscale not in UPSCALES:
        raise RsgenError(f"--upscale must be 2 or 4, got {upscale}")
    if upscale_model is not None and upscale is None:
        raise RsgenError("--upscale-model needs --upscale 2 or 4")
    path = resolve_text_to_image_model(model)
    max_steps = check_pipeline_folder(path)
    steps = min(25, max_steps) if steps is None else steps
    check_generation_options(texts, num_images, steps, guidance, truncation, max_steps)
    if seed is not None and not 0 <= seed < 2**63:
        raise RsgenError(f"--seed must be in [0, 2**63), got {seed}")
    seed = secrets.randbits(63) if seed is None else seed
    stems = _stems(texts, seed)

    from rsgen.pipelines import SuperResolver, TextToImage
    from rsgen.pipelines.text_to_image import image_grid
    from rsgen.shipped import display_name

    resolver = None
    if upscale is not None:
        resolver = SuperResolver.from_pretrained(
            upscale_model or f"degan-x{upscale}", scale=upscale, device=device, bf16=precision, progress=False
        )
    pipe = TextToImage.from_pretrained(path, device=device, bf16=precision, progress=not quiet)
    output.mkdir(parents=True, exist_ok=True)

    def save(image: Any, name: str) -> str:
        target = output / name
        with atomic_file(target) as tmp:
            image.save(tmp, format="PNG")
        return str(target)

    report = []
    for text, stem in zip(texts, stems, strict=True):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = pipe(
                text, num_images=num_images, seed=seed, steps=steps, guidance=guidance, truncation=truncation
            )
        for warning in caught:
            typer.echo("warning: " + " ".join(str(warning.message).splitlines()), err=True)
        images = result.images
        if resolver is not None:
            images = [resolver(image) for image in images]
        files = [save(image, f"{stem}_{i}.png") for i, image in enumerate(images)]
        if len(images) > 1:
            files.append(save(image_grid(images), "grid.png" if len(texts) == 1 else f"{stem}_grid.png"))
        sidecar = {
            "prompt": text,
            "seed": result.seed,
            "model": display_name(model),
            "steps": steps,
            "guidance": guidance,
            "truncation": result.settings["truncation"],
            "upscale": upscale,
            "width": images[0].width,
            "height": images[0].height,
            "seconds": round(result.seconds, 3),
            "files": files,
        }
        write_json(output / f"{stem}.json", sidecar)
        report.append(sidecar)
        if not as_json:
            typer.echo(f"{text!r} -> {len(files)} files in {output} ({result.seconds:.1f} s)", err=True)
    if as_json:
        emit_json({"model": display_name(model), "device": str(pipe.device), "results": report})


def _read_prompts(prompt: str | None, prompts_file: Path | None) -> list[str]:
    """The prompts: PROMPT, or the non-blank lines of --prompts FILE (not both)."""
    if prompt is not None and prompts_file is not None:
        raise RsgenError("give a PROMPT or --prompts FILE, not both")
    if prompts_file is None:
        if prompt is None:
            raise RsgenError("missing PROMPT (or --prompts FILE)")
        if not prompt.strip():
            raise RsgenError("PROMPT is empty")
        return [prompt.strip()]
    if not prompts_file.is_file():
        raise RsgenError("prompts file not found", prompts_file)
    try:
        lines = prompts_file.read_bytes().decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise RsgenError(
            f"prompts file is not UTF-8 text ({exc.reason} at byte {exc.start})", prompts_file
        ) from exc
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise RsgenError("prompts file has no prompts (one per line)", prompts_file)
    return texts


def _slug(text: str, length: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:length].strip("-")
    return slug or "prompt"


def _stems(texts: list[str], seed: int) -> list[str]:
    """``<slug>_<seed>`` per prompt, made unique (``-2``, ``-3``...) when slugs repeat."""
    seen: dict[str, int] = {}
    stems = []
    for text in texts:
        slug = _slug(text)
        seen[slug] = seen.get(slug, 0) + 1
        stems.append(f"{slug}{'' if seen[slug] == 1 else f'-{seen[slug]}'}_{seed}")
    return stems
