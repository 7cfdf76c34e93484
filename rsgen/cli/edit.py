"""``rsgen edit`` and ``rsgen variations``: single-image diffusion on one scene.

Both train the scene's own model first (minutes on a CPU; cached by the image's content hash,
so later runs on the same image skip it). A scene larger than ``--window`` px is edited in a
context window around the ROI, written back into a copy of the scene with its georeferencing,
data type, nodata and other bands intact.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from rsgen.cli.app import DeviceOption, JsonOption, QuietOption, app, emit_json, eval_app
from rsgen.errors import RsgenError
from rsgen.files import atomic_file, write_json

WINDOW = 384
MAX_WHOLE = 768


def _rect(text: str | None, option: str) -> tuple[int, int, int, int] | None:
    if text is None:
        return None
    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise RsgenError(f"{option} needs x,y,w,h in whole pixels, got {text!r}") from None
    if len(values) != 4:
        raise RsgenError(f"{option} needs 4 numbers x,y,w,h, got {text!r}")
    return values  # type: ignore[return-value]


TrainStepsOption = Annotated[
    int | None, typer.Option(help="Training steps of the scene's model [default: the config's, 3000].")
]
TrainConfigOption = Annotated[
    str, typer.Option(help="Training config of the scene's model (built-in name or YAML file).")
]
StepsOption = Annotated[
    int, typer.Option(min=1, help="Sampling steps per scale above the coarsest (0 < steps).")
]
WindowOption = Annotated[
    int, typer.Option(min=64, help="Scenes larger than this are edited in a window around the ROI.")
]


@app.command("edit")
def edit_command(
    image: Annotated[Path, typer.Argument(help="The scene: PNG, JPEG or GeoTIFF.")],
    prompt: Annotated[str, typer.Argument(help="What the edited place should show.")] = "",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Edited image (required).")] = None,
    roi: Annotated[str | None, typer.Option(help="Editable rectangle x,y,w,h in pixels.")] = None,
    mask: Annotated[
        Path | None, typer.Option(help="Editable pixels: a binary mask image, same size.")
    ] = None,
    copy_from: Annotated[str | None, typer.Option(help="Copy this rectangle x,y,w,h ...")] = None,
    copy_to: Annotated[
        str | None, typer.Option(help="... into this one (same size); no prompt needed.")
    ] = None,
    strength: Annotated[float, typer.Option(help="Guidance strength η, (0, 1].")] = 0.1,
    ensemble: Annotated[bool, typer.Option(help="Prompt ensembling with paraphrases.")] = True,
    paraphrase_endpoint: Annotated[
        str | None, typer.Option(help="OpenAI-compatible chat URL for paraphrases (key: $OPENAI_API_KEY).")
    ] = None,
    paraphrase_model: Annotated[str | None, typer.Option(help="Chat model of --paraphrase-endpoint.")] = None,
    guide: Annotated[
        str, typer.Option(help="Image-text model that steers the edit (name or file).")
    ] = "rs-clip",
    seed: Annotated[int | None, typer.Option(help="Random seed [default: a random one, reported].")] = None,
    steps: StepsOption = 8,
    train_steps: TrainStepsOption = None,
    train_config: TrainConfigOption = "single-image-cpu",
    window: WindowOption = WINDOW,
    device: DeviceOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Edit a scene toward a text prompt (inside --roi / --mask), or copy one region into
    another: writes OUT, OUT's stem + '_before_after.png' and a JSON sidecar (prompt,
    paraphrases, settings, CLIP scores before and after, times)."""
    from rsgen.pipelines.editor import (
        DEFAULT_GUIDE,
        EditSettings,
        check_settings,
        prompt_scores,
        scoring_models,
    )
    from rsgen.pipelines.scene_window import SceneWindow

    copy = _rect(copy_from, "--copy-from"), _rect(copy_to, "--copy-to")
    region = _rect(roi, "--roi")
    if output is None:
        raise RsgenError("missing the output file: -o OUT")
    if (copy[0] is None) != (copy[1] is None):
        raise RsgenError("--copy-from and --copy-to go together")
    copying = copy[0] is not None
    if copying and (region is not None or mask is not None):
        raise RsgenError("--copy-from/--copy-to edit the --copy-to rectangle: leave out --roi and --mask")
    if not copying and not prompt.strip():
        raise RsgenError("PROMPT is empty")
    if region is not None and mask is not None:
        raise RsgenError("give --roi or --mask, not both")
    settings = EditSettings(strength=strength, ensemble=ensemble, steps=steps)
    check_settings(settings)
    if image.exists() and output.exists() and output.resolve() == image.resolve():
        raise RsgenError("output would overwrite the input", output)
    scene = SceneWindow.open(image, region or copy[1], mask, window)
    if copying:
        copy = tuple(scene.to_window(r) for r in copy)  # type: ignore[assignment]

    editor, train_seconds = _fit(scene.rgb, train_steps, train_config, device, quiet, guide=guide)
    tic = time.perf_counter()
    if copying:
        result = editor.copy_roi(copy[0], copy[1], seed=seed, settings=settings)
    else:
        result = editor.edit(
            prompt,
            roi=scene.roi,
            mask=scene.mask,
            seed=seed,
            settings=settings,
            paraphrase_endpoint=paraphrase_endpoint,
            paraphrase_model=paraphrase_model,
        )
    warning = result.settings.get("paraphrase_warning")
    if warning:
        typer.echo(f"warning: {warning}", err=True)
    scores = (
        {}
        if copying
        else prompt_scores(
            np.asarray(result.original),
            np.asarray(result.image),
            prompt,
            result.changed,
            scoring_models(loaded={DEFAULT_GUIDE: editor.guide} if guide == DEFAULT_GUIDE else None),
        )
    )
    files = [str(path) for path in scene.write(output, result)]
    sidecar: dict[str, Any] = {
        "image": str(image),
        "output": files[0],
        "prompt": None if copying else prompt,
        "prompts": result.prompts,
        "seed": result.seed,
        "settings": result.settings,
        "window": list(scene.window),
        "scores": scores,
        "seconds": {"train": round(train_seconds, 1), "edit": round(time.perf_counter() - tic, 1)},
        "files": files,
    }
    write_json(output.with_suffix(".json"), sidecar)
    if as_json:
        emit_json(sidecar)
    else:
        typer.echo(f"{image} -> {output} (edit {sidecar['seconds']['edit']} s)", err=True)


@app.command("variations")
def variations_command(
    image: Annotated[Path, typer.Argument(help="The scene: PNG, JPEG or GeoTIFF (at most 768 px).")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Output folder (required).")] = None,
    num_images: Annotated[int, typer.Option("-n", "--num-images", min=1, help="How many variations.")] = 4,
    size: Annotated[str | None, typer.Option(help="Output size WxH [default: the scene's].")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed [default: a random one, reported].")] = None,
    steps: StepsOption = 8,
    train_steps: TrainStepsOption = None,
    train_config: TrainConfigOption = "single-image-cpu",
    device: DeviceOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Random variations of a scene from its own single-image model (any size and aspect):
    OUT/variation_<seed>_<i>.png and OUT/variations.json."""
    from PIL import Image

    from rsgen.pipelines.scene_window import SceneWindow

    if output is None:
        raise RsgenError("missing the output folder: -o OUT_DIR")
    if output.exists() and not output.is_dir():
        raise RsgenError("output must be a folder", output)
    shape = None
    if size is not None:
        try:
            width, height = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise RsgenError(f"--size needs WxH, e.g. 384x256, got {size!r}") from None
        shape = (height, width)
    scene = SceneWindow.open(image, None, None, MAX_WHOLE)
    editor, train_seconds = _fit(scene.rgb, train_steps, train_config, device, quiet)
    tic = time.perf_counter()
    images, used_seed = editor.variations(num_images, seed=seed, size=shape, steps=steps)
    output.mkdir(parents=True, exist_ok=True)
    files = []
    for i, variation in enumerate(images):
        target = output / f"variation_{used_seed}_{i}.png"
        with atomic_file(target) as tmp:
            Image.Image.save(variation, tmp, format="PNG")
        files.append(str(target))
    report = {
        "image": str(image),
        "seed": used_seed,
        "size": list(images[0].size),
        "files": files,
        "seconds": {"train": round(train_seconds, 1), "sample": round(time.perf_counter() - tic, 1)},
    }
    write_json(output / "variations.json", report)
    if as_json:
        emit_json(report)
    else:
        typer.echo(f"{image} -> {len(files)} variations in {output}", err=True)


# ---------------------------------------------------------------------- helpers


def _fit(
    rgb: np.ndarray, steps: int | None, config: str, device: str | None, quiet: bool, **options: Any
) -> tuple[Any, float]:
    from rsgen.pipelines.editor import Editor

    tic = time.perf_counter()
    editor = Editor.fit(rgb, steps=steps, config=config, device=device, progress=not quiet, **options)
    return editor, time.perf_counter() - tic


@eval_app.command("edit")
def eval_edit_command(
    cases: Annotated[Path, typer.Argument(help="JSON lines {image, prompt, roi}; images relative to it.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Folder for the pairs and results.")
    ] = None,
    max_side: Annotated[int, typer.Option(min=64, help="Images are shrunk to this long side first.")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of every edit.")] = 0,
    strength: Annotated[float, typer.Option(help="Guidance strength η, (0, 1].")] = 0.1,
    ensemble: Annotated[bool, typer.Option(help="Prompt ensembling with paraphrases.")] = True,
    steps: StepsOption = 8,
    train_steps: TrainStepsOption = None,
    train_config: TrainConfigOption = "single-image-cpu",
    judge: Annotated[
        str, typer.Option(help="Image-text model that scores but never guides.")
    ] = "rs-clip-judge",
    guide: Annotated[
        str, typer.Option(help="Image-text model that steers the edits (name or file).")
    ] = "rs-clip",
    device: DeviceOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Edit every case (one seed) and report CLIP scores before/after under the guide and the
    judge, PSNR/SSIM outside the ROI and times: OUT/results.json, OUT/contact_sheet.png."""
    from rsgen.models.image_text import ImageTextModel
    from rsgen.pipelines.edit_eval import as_dicts, contact_sheet, evaluate_edits, read_cases, summary
    from rsgen.pipelines.editor import Editor, EditSettings, check_settings

    if output is None:
        raise RsgenError("missing the output folder: -o OUT_DIR")
    settings = EditSettings(strength=strength, ensemble=ensemble, steps=steps)
    check_settings(settings)
    records = read_cases(cases)

    def fit(array: np.ndarray, guide_model: ImageTextModel) -> Editor:
        return Editor.fit(
            array,
            steps=train_steps,
            config=train_config,
            device=device,
            progress=not quiet,
            guide=guide_model,
        )

    results = evaluate_edits(
        records, output, max_side, seed, settings, fit, judge, progress=not quiet, guide=guide
    )
    contact_sheet(output, results, output / "contact_sheet.png")
    report = {
        "cases": str(cases),
        "settings": {**settings.__dict__, "max_side": max_side, "seed": seed, "guide": guide},
        "summary": summary(results),
        "results": as_dicts(results),
    }
    write_json(output / "results.json", report)
    if as_json:
        emit_json(report)
        return
    for r in results:
        cells = [
            f"{m}: {s['before']:.1f} -> {s['after']:.1f}" if s else f"{m}: n/a" for m, s in r.scores.items()
        ]
        typer.echo(
            f"{r.name:14s} {'; '.join(cells)}; PSNR out {r.psnr_outside}; {r.edit_seconds} s", err=True
        )
