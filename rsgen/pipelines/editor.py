"""``Editor``: text-guided editing of one remote-sensing image (single-image diffusion + CLIP).

>>> editor = Editor.fit("scene.png")                  # trains on the image (cached by its hash)
>>> result = editor.edit("a fire in the forest", roi=(100, 100, 200, 200), seed=0)
>>> result.image.save("burnt.png")

The method of "Exploring Text-Guided Single Image Editing for Remote Sensing Images" (its
section III), on SinDDM: a multi-scale diffusion model is trained on the one image
(:mod:`rsgen.train.tasks.single_image`); sampling runs coarse to fine
(:class:`~rsgen.diffusion.MultiScaleScheduler`), and at every step of the guided scales the
clean estimate x̂_0 is pushed toward the prompt by the gradient of an image–text model's
cosine similarity (Eq. 11-13: strength η, the step normalised by δ = ‖x̂_0 ⊙ m‖ / ‖∇L ⊙ m‖,
momentum with the previous x̂_0). Inside an ROI only; outside it x̂_0 is replaced by the
original at every step (which is the original noised with the same noise, the paper's
blending), and the final image is the original outside the ROI and its blend band.

Choices where the paper is silent are listed in docs/editing.md.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from rsgen.checkpoint import MODEL_INDEX_NAME
from rsgen.config import load_config
from rsgen.data.images import image_to_tensor, tensor_to_image
from rsgen.data.pyramid import build_pyramid, pyramid_shape, resize
from rsgen.diffusion import MultiScaleScheduler, Scheduler
from rsgen.errors import RsgenError
from rsgen.files import atomic_file, cache_root
from rsgen.io.windows import check_rect
from rsgen.models.image_text import ImageTextModel
from rsgen.models.loading import load_image_text_model
from rsgen.models.single_image_denoiser import SingleImageDenoiser
from rsgen.pipelines.base import Pipeline, as_rgb_array, read_model_index
from rsgen.pipelines.paraphrase import ParaphraseResult, paraphrase
from rsgen.shipped import WEIGHTS_DIR, resolve_model_path
from rsgen.train.loop import CHECKPOINT_NAME, run_training
from rsgen.train.tasks.single_image import PIPELINE_NAME, image_sha256

DEFAULT_CONFIG = "single-image-cpu"
DEFAULT_GUIDE = "rs-clip"
BLEND_BAND = 8
"""Pixels more than this far outside the ROI are the input's, bit for bit."""
GUIDE_VIEW = 224
FINE_STEPS = 8
"""Default sampling steps per scale above the coarsest. With a model trained for minutes, every
timestep (~20-30 per scale) overshoots: the fine scales double the image's contrast (std 0.27
vs 0.15 on the benchmark forest, SIFID 340); 8 strided steps keep it (SIFID ~50, 12 steps
~140). The coarsest scale always takes every step (it is cheap, and its colours come out
right). docs/editing.md has the measurement."""

Rect = tuple[int, int, int, int]


@dataclass
class EditSettings:
    """How an edit is steered (see :meth:`Editor.edit`)."""

    strength: float = 0.1
    """η: the size of each guidance step relative to ‖x̂_0 ⊙ m‖ (SinDDM's ROI value; 0.3
    already turns the ROI into noise on the 256 px benchmark scene)."""
    momentum: float = 0.2
    """λ: the share of the new x̂_0 kept inside the mask; the rest is the previous guided x̂_0."""
    views: int = 8
    """Augmented crops of x̂_0 the image–text model sees per step."""
    coarse_start: float = 0.6
    """Where the coarsest scale starts, as a fraction of T, from the original image noised to
    that level (1.0: from pure noise, a new layout; lower keeps more of the original)."""
    ensemble: bool = True
    paraphrases: int = 5
    steps: int | None = FINE_STEPS
    """Sampling steps per scale above the coarsest (None: every timestep; see FINE_STEPS)."""
    guide_finest: bool = False
    """Guide at the finest scale too (with an ROI). Off: there the image–text model's gradient
    paints high-frequency adversarial patterns instead of the prompt (docs/editing.md)."""
    guide_coarsest: bool = False
    """Guide at the coarsest scale too, where colours and layout are decided (SinDDM leaves it
    unguided). About 3x slower (every coarse step is guided); measured without a visible gain
    with rs-clip as the guide (docs/editing.md)."""


@dataclass
class EditResult:
    """What :meth:`Editor.edit` or :meth:`Editor.copy_roi` produced."""

    image: Image.Image
    original: Image.Image
    seed: int
    prompts: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    changed: np.ndarray | None = None
    """Bool (H, W): the pixels that may differ from the input (ROI + blend band)."""

    def before_after(self) -> Image.Image:
        """The input and the result side by side."""
        w, h = self.original.size
        pair = Image.new("RGB", (2 * w, h))
        pair.paste(self.original, (0, 0))
        pair.paste(self.image, (w, 0))
        return pair


class Editor(Pipeline):
    """Variations and text-guided edits of the one image its denoiser was trained on.

    Args:
        denoiser, scheduler: the trained components (an ``editor`` folder).
        image: the image (uint8 RGB array or PIL) the components were trained on; checked
            against the hash stored in the folder when that is known.
        guide: the image–text model that steers edits (a name or an :class:`ImageTextModel`;
            loaded on first use), ``rs-clip`` by default.
    """

    pipeline_name = PIPELINE_NAME
    component_classes = {"denoiser": SingleImageDenoiser, "scheduler": Scheduler}

    def __init__(
        self,
        denoiser: SingleImageDenoiser,
        scheduler: Scheduler,
        image: np.ndarray | Image.Image | None = None,
        guide: str | ImageTextModel = DEFAULT_GUIDE,
        device: str | torch.device | None = None,
        bf16: bool | str = False,
        progress: bool = True,
        trained_on: str | None = None,
    ) -> None:
        super().__init__(device, bf16, progress)
        if not isinstance(scheduler, MultiScaleScheduler):
            raise RsgenError(f"an editor needs a multiscale scheduler, not {scheduler.config.NAME!r}")
        self.denoiser = self.place(denoiser.float())
        self.scheduler = scheduler
        self._guide = guide
        self._frozen_guide: ImageTextModel | None = None
        self.image = None if image is None else as_rgb_array(image, what="image")
        if self.image is not None and trained_on and trained_on != image_sha256(self.image):
            raise RsgenError("this editor model was trained on another image")

    # ------------------------------------------------------------------ building

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **kwargs: Any) -> Editor:
        """A shipped editor name (``editor-forest-256``) or an ``editor`` folder (written by the
        ``single_image`` training task)."""
        path = resolve_model_path(Path(name_or_path).expanduser())
        index = read_model_index(path / MODEL_INDEX_NAME) if (path / MODEL_INDEX_NAME).is_file() else {}
        stored = index.get("image", {}).get("sha256") if isinstance(index.get("image"), dict) else None
        return cls(**cls.load_components(path), trained_on=stored, **kwargs)

    @classmethod
    def fit(
        cls,
        image: str | Path | np.ndarray | Image.Image,
        steps: int | None = None,
        config: str | Path | dict[str, Any] = DEFAULT_CONFIG,
        cache: str | Path | None = None,
        device: str | torch.device | None = None,
        progress: bool = True,
        **kwargs: Any,
    ) -> Editor:
        """Train the single-image model on ``image`` (a file or an RGB array), or load it from
        the cache when this image was trained with the same settings before (an interrupted
        training resumes). ``steps`` overrides the config's training steps."""
        array = load_rgb(image)
        run_dir, config = training_run(array, steps, config, cache)
        model_dir = trained_model(run_dir)
        if model_dir is None:
            run_training(
                config,
                run_dir,
                resume=(run_dir / CHECKPOINT_NAME).is_file(),
                device=str(device) if device else None,
                progress=progress,
            )
            model_dir = trained_model(run_dir)
        if model_dir is None:  # interrupted (Ctrl-C / SIGTERM): the checkpoint stays for next time
            raise RsgenError("training was interrupted; run again to resume it", run_dir)
        return cls.from_pretrained(model_dir, image=array, device=device, progress=progress, **kwargs)

    @property
    def guide(self) -> ImageTextModel:
        """The image–text model that steers edits (loaded, placed and frozen on first use)."""
        if self._frozen_guide is None:
            model = (
                self._guide if isinstance(self._guide, ImageTextModel) else load_image_text_model(self._guide)
            )
            self._frozen_guide = self.place(model)
            for parameter in self._frozen_guide.parameters():
                parameter.requires_grad_(False)
        return self._frozen_guide

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """The pyramid's ``(height, width)`` per scale, coarsest first (from the image)."""
        h, w = self._require_image().shape[:2]
        return list(pyramid_shape(h, w).sizes)

    # ------------------------------------------------------------------ sampling

    def variations(
        self,
        num_images: int = 1,
        seed: int | None = None,
        size: tuple[int, int] | None = None,
        steps: int | None = FINE_STEPS,
    ) -> tuple[list[Image.Image], int]:
        """Random samples of the image's model (Algorithm 2) from pure noise at the coarsest
        scale; ``size`` ``(height, width)`` changes the output size and aspect (the pyramid's
        sizes scale with it). Returns the images and the seed used."""
        if num_images < 1:
            raise RsgenError(f"number of images must be at least 1, got {num_images}")
        sizes = self._scaled_sizes(size)
        generator, seed = self.random_generator(seed)
        out = self._run(sizes, num_images, generator, steps=steps)
        return [Image.fromarray(tensor_to_image(x)) for x in out], seed

    def edit(
        self,
        prompt: str,
        roi: Rect | None = None,
        mask: np.ndarray | Image.Image | None = None,
        seed: int | None = None,
        settings: EditSettings | None = None,
        paraphrase_endpoint: str | None = None,
        paraphrase_model: str | None = None,
    ) -> EditResult:
        """Edit the image toward ``prompt`` inside ``roi`` (x, y, w, h) or ``mask`` (nonzero =
        editable), or everywhere when neither is given.

        Without an ROI the guidance stops before the finest scale (the paper's rule, for a
        smoother image); with one it runs at every scale above the coarsest.
        """
        settings = settings or EditSettings()
        check_settings(settings)
        image = self._require_image()
        editable = editable_mask(image.shape[:2], roi, mask)
        texts = self.prompts_for(prompt, settings, paraphrase_endpoint, paraphrase_model)
        start = time.perf_counter()
        generator, seed = self.random_generator(seed)
        with torch.no_grad():
            text = self.guide.encode_text(texts.prompts).float()
        target = F.normalize(F.normalize(text, dim=-1).mean(0, keepdim=True), dim=-1)
        finest = editable is not None and settings.guide_finest
        last_guided = self.scheduler.num_scales - (1 if finest else 2)
        first_guided = 0 if settings.guide_coarsest else 1
        guide = ClipGuidance(self.guide, target, settings, (first_guided, last_guided), generator)
        result = self._edit_run(editable, settings, generator, guide=guide)
        settings_out = {**settings.__dict__, "roi": list(roi) if roi else None, "mask": mask is not None}
        if texts.warning:
            settings_out["paraphrase_warning"] = texts.warning
        return self._result(result, editable, seed, texts.prompts, settings_out, start)

    def copy_roi(
        self,
        source: Rect,
        target: Rect,
        seed: int | None = None,
        strength: float = 0.8,
        settings: EditSettings | None = None,
    ) -> EditResult:
        """Copy what ``source`` holds into ``target`` (same size): at every scale but the finest
        x̂_0 inside the target moves toward the pasted content by ``strength`` (Eq. 15), and the
        model blends it into its surroundings."""
        settings = settings or EditSettings()
        check_settings(settings)
        image = self._require_image()
        height, width = image.shape[:2]
        for rect, what in ((source, "copy source"), (target, "copy target")):
            check_rect(rect, width, height, what)
        if source[2:] != target[2:]:
            raise RsgenError(
                f"copy ROIs must have the same size: {source[2]}x{source[3]} vs {target[2]}x{target[3]}"
            )
        if not 0 < strength <= 1:
            raise RsgenError(f"copy strength must be in (0, 1], got {strength}")
        pasted = image.copy()
        sx, sy, w, h = source
        tx, ty = target[:2]
        pasted[ty : ty + h, tx : tx + w] = image[sy : sy + h, sx : sx + w]
        editable = editable_mask(image.shape[:2], target, None)
        start = time.perf_counter()
        generator, seed = self.random_generator(seed)
        guide = PasteGuidance(
            image_to_tensor(pasted)[None].to(self.device), strength, self.scheduler.num_scales
        )
        result = self._edit_run(editable, settings, generator, guide=guide)
        out = {
            "copy_from": list(source),
            "copy_to": list(target),
            "strength": strength,
            "coarse_start": settings.coarse_start,
        }
        return self._result(result, editable, seed, [], out, start)

    def prompts_for(
        self, prompt: str, settings: EditSettings, endpoint: str | None = None, model: str | None = None
    ) -> ParaphraseResult:
        """The prompt and, with ensembling on, its paraphrases (offline unless ``endpoint``)."""
        if not settings.ensemble:
            if not prompt.strip():
                raise RsgenError("prompt is empty")
            return ParaphraseResult([" ".join(prompt.split())], "offline")
        return paraphrase(prompt, settings.paraphrases, endpoint=endpoint, model=model)

    # ------------------------------------------------------------------ internals

    def _require_image(self) -> np.ndarray:
        if self.image is None:
            raise RsgenError("this editor has no image: build it with Editor.fit(image) or pass image=")
        return self.image

    def _scaled_sizes(self, size: tuple[int, int] | None) -> list[tuple[int, int]]:
        sizes = self.sizes
        if size is None:
            return sizes
        height, width = (int(v) for v in size)
        full_h, full_w = sizes[-1]
        if min(height, width) < 8:
            raise RsgenError(f"output size {width}x{height} is too small")
        return [(max(4, round(h * height / full_h)), max(4, round(w * width / full_w))) for h, w in sizes]

    def _edit_run(
        self, editable: np.ndarray | None, settings: EditSettings, generator: torch.Generator, guide: Any
    ) -> torch.Tensor:
        image = image_to_tensor(self._require_image())[None].to(self.device)
        originals = build_pyramid(image, self.sizes)
        masks = None
        if editable is not None:
            full = torch.from_numpy(editable.astype(np.float32))[None, None].to(self.device)
            masks = [F.interpolate(full, size=size, mode="area").clamp(0, 1) for size in self.sizes]
            guide.masks = masks
        start = round(settings.coarse_start * (self.scheduler.num_train_timesteps - 1))
        return self._run(
            self.sizes,
            1,
            generator,
            originals=originals,
            masks=masks,
            guide=guide,
            coarse_start=start,
            steps=settings.steps,
        )

    def _run(
        self,
        sizes: list[tuple[int, int]],
        count: int,
        generator: torch.Generator,
        originals: list[torch.Tensor] | None = None,
        masks: list[torch.Tensor] | None = None,
        guide: Callable[..., torch.Tensor] | None = None,
        coarse_start: int | None = None,
        steps: int | None = None,
    ) -> torch.Tensor:
        """Coarse-to-fine sampling: every timestep at scale 0, at most ``steps`` per finer scale
        (None: all). With ``originals``, scale 0 starts from the original noised to
        ``coarse_start``; with ``masks``, x̂_0 outside them is the original's at every step."""
        scheduler = copy.copy(self.scheduler)
        result = None
        total = scheduler.num_train_timesteps + sum(
            min(steps or 10**9, scheduler.start_timestep(s) + 1) for s in range(1, len(sizes))
        )
        bar = self.progress_bar(total=total, desc="sampling", unit="step", leave=False)
        for scale, size in enumerate(sizes):
            shape = (count, 3, *size)
            blurry = None if scale == 0 else resize(result, size)
            if scale == 0 and originals is not None and coarse_start is not None:
                timesteps = scheduler.set_scale_timesteps(0, coarse_start + 1, start=coarse_start)
                x = scheduler.add_noise(originals[0].expand(shape), coarse_start, generator)
            else:
                fine = steps if scale > 0 and steps else scheduler.num_train_timesteps
                timesteps = scheduler.set_scale_timesteps(scale, fine)
                x = scheduler.start_sample(scale, shape, blurry, generator)
                if scale == 0:
                    x = x.to(self.device)
            for t in timesteps:
                t_batch = torch.full((count,), int(t), device=self.device, dtype=torch.long)
                with torch.no_grad(), self.autocast():
                    eps = self.denoiser(x, t_batch, scale).float()
                x0, eps = scheduler.predict_clean(eps, t, x, scale, blurry)
                x0 = x0.clamp(-1, 1)
                if guide is not None:
                    x0 = guide(x0, scale, int(t))
                if masks is not None and originals is not None:
                    x0 = masks[scale] * x0 + (1 - masks[scale]) * originals[scale]
                x = scheduler.step_from_clean(x0, eps, t, x, scale, blurry, generator)
                bar.update(1)
            result = x.clamp(-1, 1)
        bar.close()
        assert result is not None
        return result

    def _result(
        self,
        result: torch.Tensor,
        editable: np.ndarray | None,
        seed: int,
        prompts: list[str],
        settings: dict[str, Any],
        start: float,
    ) -> EditResult:
        original = self._require_image()
        edited = tensor_to_image(result[0])
        if editable is None:
            composed, changed = edited, np.ones(original.shape[:2], dtype=bool)
        else:
            composed, changed = compose(original, edited, editable, BLEND_BAND)
        return EditResult(
            image=Image.fromarray(composed),
            original=Image.fromarray(original),
            seed=seed,
            prompts=prompts,
            settings=settings,
            seconds=time.perf_counter() - start,
            changed=changed,
        )


class ClipGuidance:
    """Eq. 11-13: one gradient step on x̂_0 per sampling step toward the text embedding, inside
    the mask, with momentum; augmented crops of the ROI's neighbourhood are what the model sees.
    ``scales`` are the first and last guided scales."""

    def __init__(
        self,
        model: ImageTextModel,
        target: torch.Tensor,
        settings: EditSettings,
        scales: tuple[int, int],
        generator: torch.Generator,
    ) -> None:
        self.model, self.target, self.settings = model, target, settings
        self.scales, self.generator = scales, generator
        self.masks: list[torch.Tensor] | None = None
        self.previous: torch.Tensor | None = None
        self.scores: list[float] = []

    def __call__(self, x0: torch.Tensor, scale: int, t: int) -> torch.Tensor:
        if not self.scales[0] <= scale <= self.scales[1]:
            return x0
        mask = self.masks[scale] if self.masks is not None else torch.ones_like(x0[:, :1])
        if self.previous is not None:
            previous = resize(self.previous, tuple(x0.shape[-2:]))
            lam = self.settings.momentum
            x0 = (1 - mask) * x0 + mask * (lam * x0 + (1 - lam) * previous)
        with torch.enable_grad():
            x = x0.detach().requires_grad_(True)
            views = guide_views(x, mask, self.settings.views, self.generator)
            score = (self.model.encode_image(views).float() @ self.target.T).mean()
            (grad,) = torch.autograd.grad(score, x)
        delta = (x0 * mask).norm() / (grad * mask).norm().clamp(min=1e-12)
        x0 = (x0 + self.settings.strength * delta * grad * mask).clamp(-1, 1).detach()
        self.previous = x0
        self.scores.append(float(score.detach()))
        return x0


class PasteGuidance:
    """Eq. 15: x̂_0 inside the target ROI mixed with the pasted content, at every scale but the
    finest."""

    def __init__(self, pasted: torch.Tensor, strength: float, num_scales: int) -> None:
        self.pasted, self.strength, self.num_scales = pasted, strength, num_scales
        self.masks: list[torch.Tensor] | None = None

    def __call__(self, x0: torch.Tensor, scale: int, t: int) -> torch.Tensor:
        if scale >= self.num_scales - 1 or self.masks is None:
            return x0
        target = resize(self.pasted, tuple(x0.shape[-2:]))
        mask = self.masks[scale]
        return mask * ((1 - self.strength) * x0 + self.strength * target) + (1 - mask) * x0


def guide_views(x: torch.Tensor, mask: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random crops (60-100 % of the side) of the mask's bounding box grown by a
    quarter, each flipped or rotated at random, resized to 224 px (differentiable)."""
    x0, y0, box_w, box_h = grown_box((mask[0, 0] > 0.5).cpu().numpy(), tuple(x.shape[-2:]))
    views = []
    rand = torch.rand((count, 4), generator=generator, device=generator.device).tolist()
    for fraction, fy, fx, turn in rand:
        side = 0.6 + 0.4 * fraction
        ch, cw = max(8, round(box_h * side)), max(8, round(box_w * side))
        ch, cw = min(ch, box_h), min(cw, box_w)
        top, left = y0 + round(fy * (box_h - ch)), x0 + round(fx * (box_w - cw))
        crop = x[..., top : top + ch, left : left + cw]
        crop = torch.rot90(crop, int(turn * 4), dims=(-2, -1))
        views.append(F.interpolate(crop, size=(GUIDE_VIEW, GUIDE_VIEW), mode="bilinear", align_corners=False))
    return torch.cat(views)


# ---------------------------------------------------------------------- scores


JUDGE = "rs-clip-judge"


def scoring_models(
    names: Sequence[str] = (DEFAULT_GUIDE, JUDGE), loaded: Mapping[str, ImageTextModel] | None = None
) -> dict[str, ImageTextModel]:
    """The image–text models that score edits, each loaded once (``loaded`` ones reused).

    Raises:
        RsgenError: a model cannot be loaded (a score is never silently left out)."""
    loaded = loaded or {}
    return {name: loaded[name] if name in loaded else load_image_text_model(name) for name in names}


def prompt_scores(
    original: np.ndarray,
    edited: np.ndarray,
    prompt: str,
    changed: np.ndarray | None = None,
    models: Mapping[str, ImageTextModel | None] | None = None,
) -> dict[str, dict[str, float] | None]:
    """CLIP score (100 · max(cos, 0), the paper's Eq. 16) of the prompt against the region
    that may have changed (its bounding box grown by a quarter; the whole image without one),
    before and after, under each of ``models`` (default :func:`scoring_models`):
    ``{name: {"before", "after", "gain"}}``, None for a model that is not available."""
    models = scoring_models() if models is None else models
    box = grown_box(changed, original.shape[:2]) if changed is not None else (0, 0, *original.shape[:2][::-1])
    x, y, w, h = box
    crops = np.stack([original[y : y + h, x : x + w], edited[y : y + h, x : x + w]])
    pixels = torch.stack([image_to_tensor(c) for c in crops])
    out: dict[str, dict[str, float] | None] = {}
    for name, net in models.items():
        if net is None:
            out[name] = None
            continue
        with torch.no_grad():
            images = net.encode_image(pixels.to(net.device)).float()
            text = net.encode_text([prompt]).float()
        before, after = (100 * (images @ text.T).clamp(min=0)[:, 0]).tolist()
        out[name] = {"before": round(before, 2), "after": round(after, 2), "gain": round(after - before, 2)}
    return out


def grown_box(mask: np.ndarray, shape: tuple[int, int]) -> Rect:
    """The bounding box (x, y, w, h) of ``mask``'s pixels grown by a quarter on each side."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return 0, 0, shape[1], shape[0]
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    gy, gx = (y1 - y0) // 4, (x1 - x0) // 4
    y0, x0, y1, x1 = max(0, y0 - gy), max(0, x0 - gx), min(shape[0], y1 + gy), min(shape[1], x1 + gx)
    return x0, y0, x1 - x0, y1 - y0


# ---------------------------------------------------------------------- masks and composition


def editable_mask(
    shape: tuple[int, int], roi: Sequence[int] | None, mask: np.ndarray | Image.Image | None
) -> np.ndarray | None:
    """A bool (H, W) mask of the editable pixels from an ROI or a mask image (None: everywhere)."""
    height, width = shape
    if roi is not None and mask is not None:
        raise RsgenError("give an ROI or a mask, not both")
    if roi is not None:
        x, y, w, h = check_rect(roi, width, height)
        out = np.zeros(shape, dtype=bool)
        out[y : y + h, x : x + w] = True
        return out
    if mask is None:
        return None
    array = np.asarray(mask.convert("L") if isinstance(mask, Image.Image) else mask)
    if array.ndim == 3:
        array = array[..., 0]
    if array.shape != (height, width):
        raise RsgenError(f"mask is {array.shape[1]}x{array.shape[0]} px, the image {width}x{height}")
    values = np.unique(array)
    if not set(values.tolist()) <= {0, 1, 255}:
        raise RsgenError("mask must be binary (0 and 255, or 0 and 1)")
    out = array > 0
    if not out.any():
        raise RsgenError("mask is empty (no nonzero pixel)")
    return out


def compose(
    original: np.ndarray, edited: np.ndarray, editable: np.ndarray, band: int = BLEND_BAND
) -> tuple[np.ndarray, np.ndarray]:
    """The edited pixels inside ``editable``, a linear blend over ``band`` px outside it, the
    original's bytes beyond. Returns the image and the bool mask of pixels that may differ."""
    distance = ndimage.distance_transform_edt(~editable)
    weight = np.clip(1 - distance / (band + 1), 0, 1)[..., None]
    changed = weight[..., 0] > 0
    blended = np.rint(weight * edited.astype(np.float64) + (1 - weight) * original.astype(np.float64))
    out = original.copy()
    out[changed] = blended[changed].astype(np.uint8)
    return out, changed


# ---------------------------------------------------------------------- training cache


def load_rgb(image: str | Path | np.ndarray | Image.Image) -> np.ndarray:
    """A file path or an image as a uint8 RGB array."""
    if isinstance(image, str | Path):
        from rsgen.io.rgb import read_rgb_uint8

        return read_rgb_uint8(image)
    return as_rgb_array(image, what="image")


def training_run(
    array: np.ndarray, steps: int | None, config: str | Path | dict[str, Any], cache: str | Path | None
) -> tuple[Path, dict[str, Any]]:
    """The cache folder for training ``array`` with ``config`` (named by the image's hash and
    the settings' hash) and the config to train with; the image is stored there as PNG."""
    config = copy.deepcopy(config) if isinstance(config, dict) else load_config(config)
    if steps is not None:
        if steps < 1:
            raise RsgenError(f"training steps must be at least 1, got {steps}")
        config["train"]["steps"] = int(steps)
    config.setdefault("data", {})["image"] = None
    settings = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cache).expanduser() if cache is not None else cache_root() / "editor"
    run_dir = root / f"{image_sha256(array)[:16]}-{settings}"
    image_path = run_dir / "image.png"
    if not image_path.is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_file(image_path) as tmp:
            Image.fromarray(array).save(tmp, format="PNG")
    config["data"]["image"] = str(image_path)
    return run_dir / "run", config


def shipped_editor(image: np.ndarray) -> Path | None:
    """The shipped ``editor`` folder trained on exactly this image (by pixel hash), if any: such
    an image is edited without training."""
    digest = image_sha256(image)
    for index_path in sorted(WEIGHTS_DIR.glob(f"*/{MODEL_INDEX_NAME}")):
        index = read_model_index(index_path)
        stored = index.get("image")
        if (
            index.get("pipeline") == PIPELINE_NAME
            and isinstance(stored, dict)
            and stored.get("sha256") == digest
        ):
            return index_path.parent
    return None


def trained_model(run_dir: Path) -> Path | None:
    """The finished model of a cached run: ``best/`` once the run has its ``final/``."""
    if (run_dir / "final" / MODEL_INDEX_NAME).is_file():
        best = run_dir / "best"
        return best if (best / MODEL_INDEX_NAME).is_file() else run_dir / "final"
    return None


def check_settings(settings: EditSettings) -> None:
    """One-line errors for settings out of range."""
    if not 0 < settings.strength <= 1:
        raise RsgenError(f"strength must be in (0, 1], got {settings.strength}")
    if not 0 <= settings.momentum <= 1:
        raise RsgenError(f"momentum must be in [0, 1], got {settings.momentum}")
    if not 0 < settings.coarse_start <= 1:
        raise RsgenError(f"coarse start must be in (0, 1], got {settings.coarse_start}")
    if settings.views < 1 or settings.paraphrases < 1:
        raise RsgenError("views and paraphrases must be at least 1")
    if settings.steps is not None and settings.steps < 1:
        raise RsgenError(f"steps must be at least 1, got {settings.steps}")
