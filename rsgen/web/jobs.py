"""What the browser app's buttons run: text-to-image, super-resolution and editing through the
same Python API as the CLI (``TextToImage``, ``SuperResolver``, ``Editor``), each job writing
into its own folder. No Gradio here: :mod:`rsgen.web.app` wraps these for the page, and the
tests call them directly.
"""

from __future__ import annotations

import copy
import math
import re
import secrets
import shutil
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rsgen.data.samples import EDIT_EXAMPLES, EditExample, sample_path
from rsgen.errors import RsgenError
from rsgen.files import atomic_file, write_json
from rsgen.io.read import RasterInfo, open_raster, read_raster_info
from rsgen.io.windows import check_rect
from rsgen.pipelines import SuperResolver, TextToImage
from rsgen.pipelines.editor import (
    DEFAULT_CONFIG,
    DEFAULT_GUIDE,
    Editor,
    EditSettings,
    check_settings,
    prompt_scores,
    scoring_models,
    shipped_editor,
    trained_model,
    training_run,
)
from rsgen.pipelines.paraphrase import paraphrase
from rsgen.pipelines.scene_window import SceneWindow
from rsgen.pipelines.text_to_image import (
    DEFAULT_MODEL,
    DEFAULT_STEPS,
    PromptTruncatedWarning,
    check_generation_options,
    check_pipeline_folder,
    resolve_text_to_image_model,
)
from rsgen.shipped import display_name

DEFAULT_SR_MODELS = {2: "degan-x2", 4: "degan-x4"}
MAX_IMAGES = 8
"""Most images one Generate request makes."""
EDIT_WINDOW = 384
"""Scenes larger than this are edited in a window around the ROI (as ``rsgen edit --window``)."""
PREVIEW_SIDE = 1024
"""Long side of the images shown in the page (downloads are full size)."""
MAX_PIXELS = 16_000_000
"""Largest input (width x height) the Super-resolve tab takes."""

Rect = tuple[int, int, int, int]


@dataclass
class WebOptions:
    """The app's models and limits (``rsgen serve`` options; tests pass tiny models)."""

    t2i_model: str = DEFAULT_MODEL
    sr_models: dict[int, str] = field(default_factory=lambda: dict(DEFAULT_SR_MODELS))
    edit_train_steps: int | None = None
    edit_train_config: str = DEFAULT_CONFIG
    edit_guide: str = DEFAULT_GUIDE
    edit_cache: Path | None = None
    """Where editing models are cached; None: in each session's folder (deleted with it)."""
    edit_window: int = EDIT_WINDOW
    device: str | None = None
    max_pixels: int = MAX_PIXELS
    preview_side: int = PREVIEW_SIDE


class ModelStore:
    """The app's pipelines, each loaded on first use and shared by all sessions."""

    def __init__(self, options: WebOptions) -> None:
        self.options = options
        self._lock = threading.Lock()
        self._loaded: dict[Any, Any] = {}

    def _get(self, key: Any, build: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = build()
            return self._loaded[key]

    def text_to_image_steps(self) -> int:
        """The text-to-image model's most sampling steps; RsgenError when it is not there."""
        return check_pipeline_folder(resolve_text_to_image_model(self.options.t2i_model))

    def text_to_image(self) -> TextToImage:
        def build() -> TextToImage:
            pipe = TextToImage.from_pretrained(self.options.t2i_model, device=self.options.device)
            _ = pipe.text_encoder  # load it now, under the lock
            return pipe

        return self._get("t2i", build)

    def super_resolver(self, scale: int, tile: int | None = None) -> SuperResolver:
        """The x``scale`` model, with ``tile`` (LR px; None: the model's default) for this job."""
        if scale not in self.options.sr_models:
            known = ", ".join(f"x{s}" for s in sorted(self.options.sr_models))
            raise RsgenError(f"scale must be one of {known}, got {scale!r}")
        if tile is not None and not 16 <= tile <= 1024:
            raise RsgenError(f"tile must be 16 to 1024 px, got {tile}")
        name = self.options.sr_models[scale]
        base = self._get(
            ("sr", scale),
            lambda: SuperResolver.from_pretrained(name, scale=scale, device=self.options.device, bf16="auto"),
        )
        resolver = copy.copy(base)  # shares the network; the tile is this job's own
        resolver.tile = tile or base.tile
        return resolver

    def guide(self) -> Any:
        """The image-text model that steers edits (shared by every session's editor)."""
        from rsgen.models.loading import load_image_text_model

        name = self.options.edit_guide
        return self._get(("guide", name), lambda: load_image_text_model(name))


# ---------------------------------------------------------------------- images in and out


def check_image(path: str | Path, max_pixels: int | None = None) -> RasterInfo:
    """The upload's :class:`RasterInfo`; RsgenError for a non-image, a broken one or one too big."""
    info = read_raster_info(path)
    if max_pixels is not None and info.width * info.height > max_pixels:
        raise RsgenError(
            f"image is {info.width}x{info.height} px; this server takes at most {max_pixels / 1e6:g} MP",
            path,
        )
    return info


def preview_array(path: str | Path, max_side: int = PREVIEW_SIDE) -> np.ndarray:
    """An (h, w, 3) uint8 view of any raster for the page: its RGB bands (gray replicated),
    decimated to at most ``max_side`` px, non-8-bit data stretched (0.1-99.9 percentiles)."""
    with open_raster(path, min_size=1) as source:
        raw = source.read_decimated(max_side)
        roles = source.info.colorinterp
    bands = _display_bands(roles, raw.shape[0])
    x = raw[list(bands)]
    if x.dtype != np.uint8:
        values = x.astype(np.float64)
        lo, hi = np.nanpercentile(values, (0.1, 99.9)) if np.isfinite(values).any() else (0.0, 1.0)
        x = np.nan_to_num((values - lo) / max(hi - lo, 1e-12) * 255).clip(0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(np.moveaxis(x, 0, -1))


def preview_step(info: RasterInfo, max_side: int = PREVIEW_SIDE) -> int:
    """Scene pixels per preview pixel in :func:`preview_array` (its decimation step)."""
    return max(1, math.ceil(max(info.width, info.height) / max_side))


def _display_bands(roles: tuple[str, ...], count: int) -> tuple[int, int, int]:
    if all(r in roles for r in ("red", "green", "blue")):
        return roles.index("red"), roles.index("green"), roles.index("blue")
    data = [i for i, r in enumerate(roles) if r != "alpha"] if roles else list(range(count))
    data = data or [0]
    return (data[0], data[1], data[2]) if len(data) >= 3 else (data[0],) * 3  # type: ignore[return-value]


def save_png(image: Image.Image | np.ndarray, path: Path) -> Path:
    """Write ``image`` as PNG atomically; returns ``path``."""
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    with atomic_file(path) as tmp:
        picture.save(tmp, format="PNG")
    return path


def copy_sample(name: str, folder: Path) -> Path:
    """A copy of the shipped sample image ``name`` in ``folder`` (a session's), as if uploaded."""
    source = sample_path(name)
    target = folder / "samples" / name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(target) as tmp:
            shutil.copyfile(source, tmp)
    return target


def edit_example(name: str) -> EditExample | None:
    """The prompt and ROI that suit the shipped sample ``name``, if it has them."""
    return next((example for example in EDIT_EXAMPLES if example.sample == name), None)


def output_name(upload: str | Path, tag: str) -> str:
    """``<stem>_<tag><suffix>`` for the upload's output (a GeoTIFF stays ``.tif``)."""
    source = Path(upload)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", source.stem)[:60] or "image"
    return f"{stem}_{tag}{source.suffix.lower() or '.png'}"


# ---------------------------------------------------------------------- generate


@dataclass
class GenerateOutput:
    images: list[Path]
    sidecar: Path
    report: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def generate(
    store: ModelStore,
    job: Path,
    prompt: str,
    num_images: int = 1,
    seed: int | None = None,
    steps: int | None = None,
    guidance: float = 5.0,
    upscale: int | None = None,
) -> GenerateOutput:
    """Images for ``prompt`` (optionally super-resolved x2/x4) and a JSON sidecar with the
    settings that reproduce them, as ``rsgen generate`` writes. A ``seed`` of None or below 0
    draws a random one (reported)."""
    max_steps = store.text_to_image_steps()
    prompt = " ".join((prompt or "").split())
    num_images, steps = int(num_images), min(DEFAULT_STEPS, max_steps) if steps is None else int(steps)
    check_generation_options([prompt], num_images, steps, float(guidance), None, max_steps)
    if num_images > MAX_IMAGES:
        raise RsgenError(f"at most {MAX_IMAGES} images per request, got {num_images}")
    seed = _seed(seed)
    if seed >= 2**63:
        raise RsgenError(f"seed must be in [0, 2**63), got {seed}")
    resolver = store.super_resolver(upscale) if upscale else None
    pipe = store.text_to_image()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = pipe(prompt, num_images=num_images, seed=seed, steps=steps, guidance=float(guidance))
    images = [resolver(image) for image in result.images] if resolver else result.images
    paths = [save_png(image, job / f"rsgen_{seed}_{i}.png") for i, image in enumerate(images)]
    report = {
        "prompt": prompt,
        "seed": result.seed,
        "model": display_name(store.options.t2i_model),
        "steps": steps,
        "guidance": float(guidance),
        "truncation": result.settings["truncation"],
        "upscale": upscale,
        "width": images[0].width,
        "height": images[0].height,
        "seconds": round(result.seconds, 3),
        "files": [p.name for p in paths],
    }
    sidecar = write_json(job / f"rsgen_{seed}.json", report)
    notes = [str(w.message) for w in caught if issubclass(w.category, PromptTruncatedWarning)]
    return GenerateOutput(paths, sidecar, report, notes)


# ---------------------------------------------------------------------- super-resolve


@dataclass
class SuperResolveOutput:
    output: Path
    before: Path
    after: Path
    report: dict[str, Any]


def super_resolve(
    store: ModelStore, job: Path, upload: str | Path, scale: int = 4, tile: int | None = None
) -> SuperResolveOutput:
    """The upload super-resolved (a GeoTIFF stays a georeferenced GeoTIFF) and two same-size
    previews, before (bicubic) and after, for the page."""
    info = check_image(upload, store.options.max_pixels)
    resolver = store.super_resolver(int(scale), int(tile) if tile else None)
    output = job / output_name(upload, f"x{scale}")
    start = time.perf_counter()
    out_info = resolver.upscale_file(upload, output, progress=True)
    seconds = time.perf_counter() - start
    after = preview_array(output, store.options.preview_side)
    before = Image.fromarray(preview_array(upload, store.options.preview_side))
    before = before.resize((after.shape[1], after.shape[0]), Image.Resampling.BICUBIC)
    report = {
        "input": Path(upload).name,
        "output": output.name,
        "scale": int(scale),
        "tile": resolver.tile,
        "model": display_name(store.options.sr_models[int(scale)]),
        "size": [out_info.width, out_info.height],
        "georeferenced": info.georeferenced,
        "seconds": round(seconds, 2),
    }
    return SuperResolveOutput(
        output, save_png(before, job / "before.png"), save_png(after, job / "after.png"), report
    )


# ---------------------------------------------------------------------- edit


def parse_roi(x: float | None, y: float | None, w: float | None, h: float | None) -> Rect | None:
    """The ROI from the page's four fields; None when the width or height is 0 or blank."""
    values = [0 if v is None else v for v in (x, y, w, h)]
    if values[2] <= 0 or values[3] <= 0:
        return None
    if any(int(v) != v or v < 0 for v in values):
        raise RsgenError(f"ROI needs whole pixels >= 0, got x={x}, y={y}, w={w}, h={h}")
    return tuple(int(v) for v in values)  # type: ignore[return-value]


def roi_from_corners(a: tuple[int, int], b: tuple[int, int], width: int, height: int) -> Rect:
    """The rectangle (x, y, w, h) spanned by two clicked corners, clipped to the image."""
    x0, x1 = sorted((min(max(a[0], 0), width - 1), min(max(b[0], 0), width - 1)))
    y0, y1 = sorted((min(max(a[1], 0), height - 1), min(max(b[1], 0), height - 1)))
    return x0, y0, x1 - x0 + 1, y1 - y0 + 1


def roi_preview(path: str | Path, roi: Rect | None, max_side: int = PREVIEW_SIDE) -> tuple[np.ndarray, int]:
    """The image for the page with the ROI outlined in red, and the scene px per preview px."""
    info = read_raster_info(path)
    array = preview_array(path, max_side).copy()
    factor = preview_step(info, max_side)
    if roi is not None:
        x, y, w, h = check_rect(roi, info.width, info.height, "ROI")
        x0, y0 = int(x / factor), int(y / factor)
        x1 = min(array.shape[1] - 1, int((x + w - 1) / factor))
        y1 = min(array.shape[0] - 1, int((y + h - 1) / factor))
        for t in range(max(1, array.shape[1] // 200)):  # a line width that stays visible
            array[y0 : y1 + 1, [min(x0 + t, x1), max(x1 - t, x0)]] = (255, 0, 0)
            array[[min(y0 + t, y1), max(y1 - t, y0)], x0 : x1 + 1] = (255, 0, 0)
    return array, factor


def edit_prompts(prompt: str, ensemble: bool) -> list[str]:
    """The prompts an edit is steered by: ``prompt`` and, with ensembling, its paraphrases."""
    settings = EditSettings(ensemble=ensemble)
    return paraphrase(prompt, settings.paraphrases).prompts if ensemble else [" ".join(prompt.split())]


@dataclass
class EditOutput:
    output: Path
    before: Path
    after: Path
    files: list[Path]
    prompts: list[str]
    report: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def edit(
    store: ModelStore,
    job: Path,
    upload: str | Path,
    prompt: str,
    roi: Rect | None = None,
    strength: float = 0.1,
    ensemble: bool = True,
    seed: int | None = None,
    steps: int = 8,
    cache: Path | None = None,
) -> EditOutput:
    """Train (or load from ``cache``; a shipped sample uses its shipped model) the scene's
    single-image model, edit it toward ``prompt`` inside ``roi`` (everywhere when None), and
    write the edited scene (same format, a GeoTIFF keeps its georeferencing), the before/after
    pair and a JSON sidecar, as ``rsgen edit``."""
    if not (prompt or "").strip():
        raise RsgenError("the prompt is empty")
    settings = EditSettings(strength=float(strength), ensemble=bool(ensemble), steps=int(steps))
    check_settings(settings)
    scene = SceneWindow.open(upload, roi, limit=store.options.edit_window, region_hint="by drawing an ROI")
    options = store.options
    cache = options.edit_cache if options.edit_cache is not None else cache
    tic = time.perf_counter()
    editor, model = _editor_for(store, scene.rgb, cache)
    train_seconds, tic = time.perf_counter() - tic, time.perf_counter()
    result = editor.edit(prompt, roi=scene.roi, seed=_seed(seed), settings=settings)
    scores = prompt_scores(
        np.asarray(result.original),
        np.asarray(result.image),
        prompt,
        result.changed,
        scoring_models((options.edit_guide,), loaded={options.edit_guide: editor.guide}),
    )
    output = job / output_name(upload, "edited")
    output, pair = scene.write(output, result)
    report = {
        "image": Path(upload).name,
        "prompt": prompt,
        "prompts": result.prompts,
        "roi": list(roi) if roi else None,
        "window": list(scene.window),
        "seed": result.seed,
        "settings": result.settings,
        "scores": scores,
        "model": model,
        "seconds": {"train": round(train_seconds, 1), "edit": round(time.perf_counter() - tic, 1)},
        "files": [output.name, pair.name],
    }
    sidecar = write_json(output.with_suffix(".json"), report)
    notes = [result.settings["paraphrase_warning"]] if result.settings.get("paraphrase_warning") else []
    return EditOutput(
        output,
        save_png(result.original, job / "before.png"),
        save_png(result.image, job / "after.png"),
        [output, pair, sidecar],
        result.prompts,
        report,
        notes,
    )


def _editor_for(store: ModelStore, rgb: np.ndarray, cache: Path | None) -> tuple[Editor, str]:
    """The editor of the scene ``rgb`` and where it came from: the shipped one trained on
    exactly this image (a shipped sample), else trained now or loaded from ``cache``."""
    options = store.options
    shipped = shipped_editor(rgb)
    if shipped is not None:
        editor = Editor.from_pretrained(shipped, image=rgb, device=options.device, guide=store.guide())
        return editor, f"shipped ({shipped.name})"
    run_dir, _ = training_run(rgb, options.edit_train_steps, options.edit_train_config, cache)
    was_cached = trained_model(run_dir) is not None
    editor = Editor.fit(
        rgb,
        steps=options.edit_train_steps,
        config=options.edit_train_config,
        cache=cache,
        device=options.device,
        guide=store.guide(),
    )
    return editor, "cached" if was_cached else f"trained ({options.edit_train_config})"


def _seed(seed: int | None) -> int:
    """``seed``, or for None / below 0 a random one under 2**31: the page shows numbers as
    JavaScript floats, exact only up to 2**53, and a seed must read back as it was used."""
    return secrets.randbelow(2**31) if seed is None or seed < 0 else int(seed)
