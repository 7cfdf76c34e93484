"""Evaluation of text-guided editing over a set of cases (the paper's Table I, with a judge).

A case file is JSON lines ``{"image": "forest.jpg", "prompt": "...", "roi": [x, y, w, h]}``
(``roi`` optional; images relative to the case file). Each image is shrunk so that its long
side is at most ``max_side`` (the ROI with it), its single-image model is trained (or loaded
from the cache), and it is edited once with a fixed seed. Per case:

* CLIP score of the edit against the prompt, before and after, under the model that guided
  the edit (``rs-clip``) and under one that did not (``rs-clip-judge``), with the gain;
* PSNR and SSIM to the original outside the ROI (its 8 px blend band included);
* training and editing time.

A guide's own score can rise without any visible edit; the judge's gain is the number to
read, and the contact sheet is what to look at.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rsgen.errors import RsgenError
from rsgen.files import atomic_file
from rsgen.io.rgb import read_rgb_uint8
from rsgen.metrics.image_quality import masked_psnr, masked_ssim
from rsgen.models.image_text import ImageTextModel
from rsgen.pipelines.editor import (
    DEFAULT_GUIDE,
    JUDGE,
    Editor,
    EditSettings,
    editable_mask,
    prompt_scores,
    scoring_models,
)


@dataclass
class EditCase:
    """One line of a case file."""

    image: Path
    prompt: str
    roi: tuple[int, int, int, int] | None = None

    @property
    def name(self) -> str:
        return self.image.stem


@dataclass
class EditCaseResult:
    """What one case measured."""

    name: str
    prompt: str
    roi: list[int] | None
    size: list[int]
    scores: dict[str, dict[str, float] | None]
    psnr_outside: float | None
    ssim_outside: float | None
    train_seconds: float
    edit_seconds: float
    prompts: list[str] = field(default_factory=list)


def read_cases(path: str | Path) -> list[EditCase]:
    """The cases of a JSON-lines file; one-line errors for a bad line, a missing image."""
    path = Path(path)
    if not path.is_file():
        raise RsgenError("case file not found", path)
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            image, prompt = path.parent / record["image"], str(record["prompt"])
            roi = record.get("roi")
            roi = None if roi is None else tuple(int(v) for v in roi)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise RsgenError(f"line {number}: not a case ({type(exc).__name__}: {exc})", path) from exc
        if roi is not None and len(roi) != 4:
            raise RsgenError(f"line {number}: roi needs 4 numbers x, y, w, h", path)
        if not image.is_file():
            raise RsgenError(f"line {number}: image not found: {image}", path)
        cases.append(EditCase(image, prompt, roi))  # type: ignore[arg-type]
    if not cases:
        raise RsgenError("no cases in the file", path)
    return cases


def shrink(array: np.ndarray, roi: tuple[int, int, int, int] | None, max_side: int):
    """``array`` (and ``roi``) scaled so that the long side is at most ``max_side``."""
    height, width = array.shape[:2]
    factor = min(1.0, max_side / max(height, width))
    if factor == 1.0:
        return array, roi
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    small = np.asarray(Image.fromarray(array).resize(size, Image.LANCZOS))
    if roi is None:
        return small, None
    x, y, w, h = roi
    x0, y0 = round(x * factor), round(y * factor)
    x1, y1 = round((x + w) * factor), round((y + h) * factor)
    return small, (x0, y0, max(1, x1 - x0), max(1, y1 - y0))


def evaluate_edits(
    cases: list[EditCase],
    out_dir: Path,
    max_side: int = 256,
    seed: int = 0,
    settings: EditSettings | None = None,
    fit: Callable[[np.ndarray, ImageTextModel], Editor] | None = None,
    judge: str = JUDGE,
    progress: bool = True,
    guide: str = DEFAULT_GUIDE,
) -> list[EditCaseResult]:
    """Edit every case and measure it; writes ``<name>_before_after.png`` per case under
    ``out_dir``. ``fit(image, guide_model)`` builds the editor of an image (default
    :meth:`Editor.fit`); the ``guide`` model is loaded once, steers every edit and scores them
    beside ``rs-clip`` and ``judge``."""
    settings = settings or EditSettings()
    fit = fit or (lambda array, guide_model: Editor.fit(array, progress=progress, guide=guide_model))
    out_dir.mkdir(parents=True, exist_ok=True)
    scorers = scoring_models(tuple(dict.fromkeys((guide, DEFAULT_GUIDE, judge))))
    results = []
    for case in cases:
        array, roi = shrink(read_rgb_uint8(case.image), case.roi, max_side)
        editable_mask(array.shape[:2], roi, None)  # a bad ROI fails before any training
        tic = time.perf_counter()
        editor = fit(array, scorers[guide])
        trained = time.perf_counter() - tic
        result = editor.edit(case.prompt, roi=roi, seed=seed, settings=settings)
        edited = np.asarray(result.image)
        outside = np.ones(array.shape[:2], dtype=bool)
        if roi is not None:
            x, y, w, h = roi
            outside[y : y + h, x : x + w] = False
        scores = prompt_scores(array, edited, case.prompt, result.changed, scorers)
        with atomic_file(out_dir / f"{case.name}_before_after.png") as tmp:
            result.before_after().save(tmp, format="PNG")
        results.append(
            EditCaseResult(
                name=case.name,
                prompt=case.prompt,
                roi=None if roi is None else list(roi),
                size=[array.shape[1], array.shape[0]],
                scores=scores,
                psnr_outside=_finite(masked_psnr(edited, array, outside)) if outside.any() else None,
                ssim_outside=round(masked_ssim(edited, array, outside), 4) if outside.any() else None,
                train_seconds=round(trained, 1),
                edit_seconds=round(result.seconds, 1),
                prompts=result.prompts,
            )
        )
    return results


def _finite(value: float) -> float | None:
    """JSON has no infinity: identical pixels (PSNR = inf) are reported as None."""
    return None if not np.isfinite(value) else round(value, 2)


def contact_sheet(out_dir: Path, results: list[EditCaseResult], path: Path) -> None:
    """Every case's before/after pair, one per row, with its prompt written above it."""
    from PIL import ImageDraw

    pairs = [Image.open(out_dir / f"{r.name}_before_after.png").convert("RGB") for r in results]
    width = max(p.width for p in pairs)
    label = 16
    sheet = Image.new("RGB", (width, sum(p.height + label for p in pairs)), "white")
    top = 0
    for result, pair in zip(results, pairs, strict=True):
        ImageDraw.Draw(sheet).text((4, top + 2), f"{result.name}: {result.prompt}", fill="black")
        sheet.paste(pair, (0, top + label))
        top += pair.height + label
    with atomic_file(path) as tmp:
        sheet.save(tmp, format="PNG")


def summary(results: list[EditCaseResult]) -> dict[str, Any]:
    """Means over the cases: each model's before/after/gain, PSNR/SSIM outside, times."""
    out: dict[str, Any] = {"cases": len(results)}
    for model in results[0].scores:
        rows = [r.scores[model] for r in results if r.scores.get(model)]
        out[model] = (
            {k: round(float(np.mean([row[k] for row in rows])), 2) for k in ("before", "after", "gain")}
            if rows
            else None
        )
    for key in ("psnr_outside", "ssim_outside", "train_seconds", "edit_seconds"):
        values = [getattr(r, key) for r in results if getattr(r, key) is not None]
        out[key] = round(float(np.mean(values)), 3) if values else None
    return out


def as_dicts(results: list[EditCaseResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]
