"""``rsgen demo``: the three capabilities chained on built-in samples, written up as a web page.

With no input beyond an output folder, :func:`run_demo`

1. **generate**: samples one scene per fixed prompt with the shipped text-to-image model
   (seeded; skipped with a note when no such model is shipped),
2. **upscale**: super-resolves the first generated scene,
3. **edit**: edits the shipped forest sample with the shipped editor (``editor-forest-256``, so
   nothing trains) toward "a fire in the forest" inside an ROI, scored before/after by CLIP,
4. **geo_sr**: writes the shipped houses sample as a georeferenced GeoTIFF, degrades it with the
   project's bicubic downscale, super-resolves it as a GeoTIFF (the georeferencing path of
   :mod:`rsgen.io`) and compares PSNR with bicubic,

then writes ``index.html`` (:mod:`rsgen.pipelines.demo_report`), ``contact_sheet.png`` and
``demo.json``. Each step's files go into a subfolder named after it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from PIL import Image, ImageDraw
from rasterio.crs import CRS
from rasterio.transform import Affine

from rsgen.data.degradation import bicubic_downscale, bicubic_upscale
from rsgen.data.samples import EDIT_EXAMPLES, HOUSES, load_sample, sample_path
from rsgen.errors import RsgenError
from rsgen.files import atomic_file, write_json
from rsgen.io import read_raster_info, read_rgb_uint8, write_rgb_uint8
from rsgen.metrics import psnr
from rsgen.pipelines import text_to_image
from rsgen.pipelines.demo_report import (
    DemoResult,
    Figure,
    StepReport,
    write_contact_sheet,
    write_page,
)
from rsgen.pipelines.editor import DEFAULT_GUIDE, Editor, EditSettings, prompt_scores, scoring_models
from rsgen.pipelines.super_resolution import SuperResolver
from rsgen.pipelines.text_to_image import DEFAULT_GUIDANCE, DEFAULT_MODEL, DEFAULT_STEPS, TextToImage
from rsgen.shipped import display_name

DEMO_CRS = "EPSG:32633"
DEMO_ORIGIN = (600000.0, 5340000.0)
DEMO_PIXEL_M = 0.6
DEMO_SIZE = 256
PANEL_LABELS = ("LR (nearest)", "bicubic", "DEGAN", "original HR")
DEMO_PROMPTS = (
    "many buildings and green trees are around a playground",
    "a bridge is over a river with green trees on both sides",
    "some boats are in a port near a road",
    "many green trees are in a forest",
)
"""RSICD-style captions of four of the training set's scene classes."""
DEFAULT_EDITOR = "editor-forest-256"
EDIT_EXAMPLE = EDIT_EXAMPLES[0]
"""The forest sample, "a fire in the forest", ROI (64, 64, 128, 128)."""
QUICK_EDIT = EditSettings(views=1, steps=1, ensemble=False)
"""Edit settings of a seconds-long smoke run (``rsgen demo --quick``)."""

Log = Callable[[str], None]


@dataclass
class DemoOptions:
    """What :func:`run_demo` runs (the defaults are the demo; tests pass tiny models)."""

    output_dir: Path = Path("rsgen-demo")
    sr_model: str | Path | None = None
    """Super-resolution model of steps 2 and 4 (default ``degan-x<scale>``)."""
    scale: int = 4
    size: int = DEMO_SIZE
    """Side of the HR crop of the georeferenced sample, in pixels."""
    device: str | None = None
    t2i_model: str | Path | None = None
    """None: the shipped ``rsvq-cpu``, and steps 1-2 are skipped with a note while it is not
    shipped; a name or folder given here must load."""
    prompts: tuple[str, ...] = DEMO_PROMPTS
    t2i_steps: int = DEFAULT_STEPS
    guidance: float = DEFAULT_GUIDANCE
    seed: int = 0
    editor_model: str | Path = DEFAULT_EDITOR
    """An ``editor`` folder trained on the forest sample (default: the shipped one)."""
    edit_settings: EditSettings = field(default_factory=EditSettings)
    progress: bool = False
    """tqdm bars of the pipelines on stderr."""


# ---------------------------------------------------------------------- helpers


def center_crop(image: np.ndarray, size: int, multiple: int) -> np.ndarray:
    """A centred crop of at most ``size`` px per side, both sides divisible by ``multiple``."""
    height, width = image.shape[:2]
    side_h = min(size, height) // multiple * multiple
    side_w = min(size, width) // multiple * multiple
    if side_h < 2 * multiple or side_w < 2 * multiple:
        raise RsgenError(f"demo image is too small ({width}x{height} px) for x{multiple}")
    top, left = (height - side_h) // 2, (width - side_w) // 2
    return np.ascontiguousarray(image[top : top + side_h, left : left + side_w])


def write_geotiff(path: Path, image: np.ndarray, transform: Affine, crs: str = DEMO_CRS) -> Path:
    """Write an RGB uint8 array as a georeferenced GeoTIFF (atomically)."""
    height, width = image.shape[:2]
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 3,
        "dtype": "uint8",
        "crs": CRS.from_string(crs),
        "transform": transform,
        "photometric": "RGB",
        "compress": "deflate",
    }
    with atomic_file(path) as tmp, rasterio.open(tmp, "w", **profile) as ds:
        ds.write(np.moveaxis(image, -1, 0))
    return path


def comparison_strip(panels: list[np.ndarray], labels: tuple[str, ...] = PANEL_LABELS) -> Image.Image:
    """Panels of equal size side by side, separated by white gaps, labelled above."""
    height, width = panels[0].shape[:2]
    gap, header = 4, 16
    canvas = Image.new("RGB", (len(panels) * width + (len(panels) - 1) * gap, height + header), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (panel, label) in enumerate(zip(panels, labels, strict=True)):
        x = i * (width + gap)
        canvas.paste(Image.fromarray(panel), (x, header))
        draw.text((x + 2, 2), label, fill="black")
    return canvas


def georeferencing(path: Path) -> dict[str, Any]:
    """CRS, geotransform (GDAL order), pixel size and size of a raster file."""
    info = read_raster_info(path)
    t = info.transform
    return {
        "crs": str(info.crs) if info.crs else None,
        "transform": [t.c, t.a, t.b, t.f, t.d, t.e],
        "pixel_size": [abs(t.a), abs(t.e)],
        "width": info.width,
        "height": info.height,
    }


def save_image(image: Image.Image | np.ndarray, path: Path) -> Path:
    """Write an RGB image (PNG/JPEG/GeoTIFF by suffix) atomically; returns ``path``."""
    write_rgb_uint8(path, np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image))
    return path


def outline(image: np.ndarray, rect: tuple[int, int, int, int], width: int = 2) -> Image.Image:
    """``image`` with the rectangle (x, y, w, h) drawn in red."""
    picture = Image.fromarray(image).copy()
    x, y, w, h = rect
    ImageDraw.Draw(picture).rectangle((x, y, x + w - 1, y + h - 1), outline=(255, 0, 0), width=width)
    return picture


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe short form of ``text``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit].rstrip("_") or "image"


# ---------------------------------------------------------------------- the steps


def load_text_to_image(options: DemoOptions) -> tuple[TextToImage | None, str | None]:
    """The text-to-image pipeline, or None and why when the default one is not shipped (a model
    the user named must load: its error propagates)."""
    name = options.t2i_model or DEFAULT_MODEL
    try:
        pipe = TextToImage.from_pretrained(name, device=options.device, progress=options.progress)
    except RsgenError as exc:
        if options.t2i_model is not None:
            raise
        hint = "pass a pipeline folder with --t2i-model DIR"
        if not (text_to_image.WEIGHTS_DIR / DEFAULT_MODEL).is_dir():
            return None, f"no text-to-image model is shipped in this install yet ({DEFAULT_MODEL}); {hint}"
        return None, f"the shipped {DEFAULT_MODEL} did not load ({exc}); {hint}"
    return pipe, None


def generate_step(pipe: TextToImage, options: DemoOptions, out: Path) -> tuple[StepReport, list[Path]]:
    """Step 1: one image per prompt, each from a generator seeded with ``options.seed``."""
    tic = time.perf_counter()
    steps = min(options.t2i_steps, pipe.max_steps)
    result = pipe(
        list(options.prompts), num_images=1, seed=options.seed, steps=steps, guidance=options.guidance
    )
    paths = [
        save_image(image, out / "generate" / f"{i + 1}_{slug(prompt)}.png")
        for i, (image, prompt) in enumerate(zip(result.images, result.prompts, strict=True))
    ]
    width, height = result.images[0].size
    report = StepReport(
        "generate",
        "Text to image",
        settings={
            "model": display_name(options.t2i_model or DEFAULT_MODEL),
            "prompts": result.prompts,
            "seed": result.seed,
            **result.settings,
            "size": [width, height],
        },
        scores={"sampling_seconds": round(result.seconds, 3)},
        figures=[_figure(out, p, prompt) for p, prompt in zip(paths, result.prompts, strict=True)],
    )
    report.seconds = time.perf_counter() - tic
    return report, paths


def upscale_step(resolver: SuperResolver, source: Path, out: Path) -> StepReport:
    """Step 2: the generated image super-resolved (and bicubic beside it)."""
    tic = time.perf_counter()
    image = read_rgb_uint8(source)
    sr = resolver(image)
    scale = resolver.scale
    folder = out / "upscale"
    bicubic = save_image(bicubic_upscale(Image.fromarray(image), scale), folder / f"bicubic_x{scale}.png")
    output = save_image(sr, folder / f"{source.stem}_x{scale}.png")
    return StepReport(
        "upscale",
        f"Super-resolution of a generated scene (x{scale})",
        settings={
            "model": resolver.name,
            "scale": scale,
            "input": source.relative_to(out).as_posix(),
            "input_size": [image.shape[1], image.shape[0]],
            "output_size": [sr.shape[1], sr.shape[0]],
        },
        seconds=time.perf_counter() - tic,
        figures=[
            _figure(out, source, "generated", "input", sheet=False),
            _figure(out, bicubic, f"bicubic x{scale}"),
            _figure(out, output, f"{resolver.name} x{scale}"),
        ],
    )


def load_editor(options: DemoOptions) -> Editor:
    """The editor of the forest sample (RsgenError if it was trained on another image)."""
    image = load_sample(EDIT_EXAMPLE.sample)
    return Editor.from_pretrained(
        options.editor_model, image=image, device=options.device, progress=options.progress
    )


def edit_step(editor: Editor, options: DemoOptions, out: Path) -> StepReport:
    """Step 3: the forest sample edited inside the ROI with the shipped editor, CLIP-scored."""
    tic = time.perf_counter()
    example = EDIT_EXAMPLE
    image = load_sample(example.sample)
    result = editor.edit(example.prompt, roi=example.roi, seed=options.seed, settings=options.edit_settings)
    edited = np.asarray(result.image)
    scores = prompt_scores(
        image, edited, example.prompt, result.changed, scoring_models(loaded={DEFAULT_GUIDE: editor.guide})
    )
    assert result.changed is not None
    folder = out / "edit"
    figures = [
        _figure(out, save_image(image, folder / example.sample), f"shipped sample {example.sample}", "input"),
        _figure(out, save_image(outline(image, example.roi), folder / "roi.png"), "ROI", "input"),
        _figure(out, save_image(edited, folder / "edited.png"), f"edited: {example.prompt}"),
        _figure(
            out, save_image(result.before_after(), folder / "before_after.png"), "before | after", sheet=False
        ),
    ]
    return StepReport(
        "edit",
        "Text-guided editing of a shipped scene",
        settings={
            "image": f"rsgen/samples/{example.sample}",
            "model": display_name(options.editor_model),
            "prompt": example.prompt,
            "prompts": result.prompts,
            "seed": result.seed,
            **result.settings,
        },
        scores={
            "clip_score": scores,
            "pixels_changed_outside_roi_and_band": int(
                (edited[~result.changed] != image[~result.changed]).sum()
            ),
            "edit_seconds": round(result.seconds, 3),
        },
        seconds=time.perf_counter() - tic,
        figures=figures,
    )


def geo_sr_step(resolver: SuperResolver, options: DemoOptions, out: Path) -> StepReport:
    """Step 4: the houses sample as a georeferenced GeoTIFF, degraded, super-resolved as a GeoTIFF
    and compared with bicubic (PSNR against the HR crop, ``crop_border=scale``)."""
    tic = time.perf_counter()
    scale = resolver.scale
    hr = center_crop(load_sample(HOUSES), options.size, scale)
    lr = np.asarray(bicubic_downscale(Image.fromarray(hr), scale))
    folder = out / "geo_sr"
    hr_transform = Affine.translation(*DEMO_ORIGIN) @ Affine.scale(DEMO_PIXEL_M, -DEMO_PIXEL_M)
    folder.mkdir(parents=True, exist_ok=True)
    tifs = {
        "hr": write_geotiff(folder / "hr.tif", hr, hr_transform),
        "lr": write_geotiff(folder / "lr.tif", lr, hr_transform @ Affine.scale(scale)),
        "sr": folder / "sr.tif",
    }
    sr_tic = time.perf_counter()
    resolver.upscale_file(tifs["lr"], tifs["sr"], progress=options.progress)
    seconds_sr = time.perf_counter() - sr_tic
    sr = read_rgb_uint8(tifs["sr"])
    bicubic = np.asarray(bicubic_upscale(Image.fromarray(lr), scale))
    nearest = np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)
    comparison = comparison_strip([nearest, bicubic, sr, hr])
    return StepReport(
        "geo_sr",
        f"Super-resolution of a georeferenced scene (GeoTIFF in and out, x{scale})",
        settings={
            "image": f"rsgen/samples/{HOUSES}",
            "model": resolver.name,
            "scale": scale,
            "device": str(resolver.device),
            "hr_size": [hr.shape[1], hr.shape[0]],
            "lr_size": [lr.shape[1], lr.shape[0]],
            "crs": DEMO_CRS,
            "hr_pixel_m": DEMO_PIXEL_M,
        },
        scores={
            "psnr_model": _db(psnr(sr, hr, crop_border=scale)),
            "psnr_bicubic": _db(psnr(bicubic, hr, crop_border=scale)),
            "sr_georeferencing": georeferencing(tifs["sr"]),
            "sr_seconds": round(seconds_sr, 3),
        },
        seconds=time.perf_counter() - tic,
        figures=[
            _figure(out, save_image(comparison, folder / "comparison.png"), "LR | bicubic | DEGAN | HR"),
            _figure(out, save_image(bicubic, folder / "bicubic.png"), "bicubic", sheet=False),
            _figure(out, save_image(sr, folder / "sr.png"), resolver.name, sheet=False),
        ],
        files={key: path.relative_to(out).as_posix() for key, path in tifs.items()},
    )


def _figure(out: Path, path: Path, caption: str, role: str = "output", sheet: bool = True) -> Figure:
    return Figure(path.relative_to(out).as_posix(), caption, role, sheet)


def _db(value: float) -> float | None:
    return round(float(value), 4) if np.isfinite(value) else None


# ---------------------------------------------------------------------- the demo


def run_demo(options: DemoOptions | None = None, log: Log | None = None) -> DemoResult:
    """Run every step of the demo and write its files, ``index.html``, ``contact_sheet.png``
    and ``demo.json`` into ``options.output_dir``; ``log`` gets one line per step."""
    options = options or DemoOptions()
    say = log or (lambda line: None)
    start = time.perf_counter()
    out = Path(options.output_dir)
    resolver = SuperResolver.from_pretrained(
        options.sr_model or f"degan-x{options.scale}", scale=options.scale, device=options.device
    )
    sample_path(HOUSES)  # every model and sample is checked before anything is written
    editor = load_editor(options)
    pipe, why = load_text_to_image(options)
    out.mkdir(parents=True, exist_ok=True)
    steps = _t2i_steps(pipe, why, resolver, options, out, say)
    example = EDIT_EXAMPLE
    say(f"edit: {example.prompt!r} in ROI {list(example.roi)} of {example.sample} ({options.editor_model})")
    steps.append(edit_step(editor, options, out))
    say(f"geo_sr: GeoTIFF super-resolution x{resolver.scale} of {HOUSES}")
    steps.append(geo_sr_step(resolver, options, out))
    result = DemoResult(str(out), str(resolver.device), torch.get_num_threads(), steps)
    result.files = {"index": "index.html", "contact_sheet": "contact_sheet.png", "json": "demo.json"}
    result.seconds_total = time.perf_counter() - start
    say("writing index.html, contact_sheet.png and demo.json")
    write_contact_sheet(result, out / "contact_sheet.png")
    write_page(result, out / "index.html")
    write_json(out / "demo.json", result.to_dict())
    return result


def _t2i_steps(
    pipe: TextToImage | None,
    why: str | None,
    resolver: SuperResolver,
    options: DemoOptions,
    out: Path,
    say: Log,
) -> list[StepReport]:
    """Steps 1 and 2, or both skipped with ``why``."""
    titles = ("Text to image", f"Super-resolution of a generated scene (x{resolver.scale})")
    if pipe is None:
        say(f"note: text-to-image skipped: {why}")
        return [StepReport("generate", titles[0], skipped=why), StepReport("upscale", titles[1], skipped=why)]
    say(f"generate: {len(options.prompts)} prompts, seed {options.seed}")
    generated, paths = generate_step(pipe, options, out)
    say(f"upscale: {paths[0].name} x{resolver.scale}")
    return [generated, upscale_step(resolver, paths[0], out)]
