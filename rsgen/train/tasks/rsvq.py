"""Training the RSVQ-Diffusion transformer: mask-and-replace diffusion over frozen VQ tokens,
conditioned on frozen MiniLM caption states.

Everything frozen runs once, before the first step. Every training image is tokenized in
``1 + train.views`` views: view 0 is its centre (``image_size`` from the ``load_size`` square),
views 1.. are seeded random crops with one of the 8 flips / 90° rotations (a rotated image's
token grid is not the rotated grid, so each view is encoded). The distinct captions of every
image (:func:`~rsgen.data.captions.unique_captions`) go through MiniLM once; their token states
are packed end to end (fp16) with offsets. Both live in memory and in one file under
``$RSGEN_CACHE/rsvq_tokens/`` keyed by the tokenizer weights, the images, the captions and the
view settings, so a second run (or ``--resume``) skips them.

A step draws ``(image, view, caption)`` per sample from an RNG seeded by ``(seed, step)`` and the
noise from a generator seeded the same way, so ``--resume`` replays exactly. Captions are dropped
to the learned null context with probability ``train.text_drop`` (classifier-free guidance).
Validation is the scheduler's loss and the x0 token accuracy on the held-out images' centre
views at fixed timesteps with fixed noise (``val_loss`` picks ``best/``, lower is better).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from rsgen.checkpoint import save_pipeline_folder
from rsgen.data.captions import CaptionRecord, holdout_split, read_caption_records, unique_captions
from rsgen.data.images import center_square, image_to_tensor
from rsgen.data.paths import resolve_data_path
from rsgen.data.scene_images import SceneImages
from rsgen.device import use_bf16
from rsgen.diffusion import build_scheduler
from rsgen.diffusion.vq_diffusion import VQDiffusionScheduler
from rsgen.errors import RsgenError
from rsgen.files import atomic_file, cache_root
from rsgen.models.diffusion_transformer import DiffusionTransformer
from rsgen.models.vq_tokenizer import VQTokenizer
from rsgen.progress import progress_bar
from rsgen.shipped import resolve_model_path
from rsgen.train.distributed import DistContext
from rsgen.train.ema import EMA
from rsgen.train.schedules import set_lr, warmup_cosine
from rsgen.train.tasks.base import SingleModelState, grad_clip_of, optimizer_step

CACHE_VERSION = 1
#: = ``TextToImage.pipeline_name`` (pipelines sit above train: the name is defined here).
PIPELINE_NAME = "text_to_image"
#: Validation timesteps as fractions of T (10, 30, 50, 70, 90 for T = 100).
VAL_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
ENCODE_CHUNK = 32
TEXT_CHUNK = 64


def tokenizer_folder(path: str | Path) -> Path:
    """``tokenizer:``, a folder (``~`` expanded) or a shipped one (``rsvq-cpu/tokenizer``); a
    missing folder is a one-line error."""
    folder = Path(os.path.expanduser(str(path)))
    with contextlib.suppress(RsgenError):
        folder = resolve_model_path(folder)
    if not (folder / "config.json").is_file():
        raise RsgenError("no trained tokenizer folder here (train one: rsgen train vq-tokenizer-cpu)", folder)
    return folder


def augmented_view(image: np.ndarray, size: int, rng: np.random.Generator) -> torch.Tensor:
    """A random ``size`` crop of a uint8 square with a random flip / 90° rotation, in [-1, 1]."""
    top, left = (int(v) for v in rng.integers(0, image.shape[0] - size + 1, size=2))
    crop = np.rot90(image[top : top + size, left : left + size], k=int(rng.integers(4)))
    if rng.integers(2):
        crop = crop[:, ::-1]
    return image_to_tensor(Image.fromarray(np.ascontiguousarray(crop)))


class RSVQTask(SingleModelState):
    """Owns the transformer, its optimiser, the scheduler and the pre-computed tokens and text."""

    selection_metric = "val_loss"
    selection_mode = "min"

    def __init__(self, config: dict[str, Any], ctx: DistContext) -> None:
        if ctx.distributed:
            raise RsgenError("task 'rsvq' trains in one process (run it without torchrun)")
        self.config, self.ctx = config, ctx
        data, train = config["data"], config["train"]
        self.seed = int(config.get("seed", 0))
        if "tokenizer" not in config:
            raise RsgenError("the config needs 'tokenizer:', the folder of a trained vq_tokenizer")
        self.tokenizer_path = tokenizer_folder(config["tokenizer"])
        self.tokenizer = tokenizer = VQTokenizer.from_pretrained(self.tokenizer_path).to(ctx.device).eval()
        self.model = DiffusionTransformer.from_config(config["model"]).to(ctx.device)
        try:
            self.scheduler = build_scheduler(config.get("scheduler", {"name": "vq_diffusion"}))
        except ValueError as exc:
            raise RsgenError(f"invalid scheduler config: {exc}") from exc
        if not isinstance(self.scheduler, VQDiffusionScheduler):
            raise RsgenError("task 'rsvq' needs the vq_diffusion scheduler")
        self._check_sizes(tokenizer, int(data.get("image_size", 128)))

        records = read_caption_records(resolve_data_path(data["dir"], data.get("root")), data.get("split"))
        train_records, val_records = holdout_split(records, float(data.get("val_fraction", 0.1)), self.seed)
        val_records = val_records[: int(data.get("val_images", len(val_records)))]
        self.views = int(train.get("views", 4))
        if self.views < 0:
            raise RsgenError(f"train.views must be >= 0, got {self.views}")
        cache = self._precompute(tokenizer, train_records, val_records, data)
        del tokenizer
        self.tokens = cache["tokens"]  # (N, 1 + views, h, w) int16
        self.val_tokens = cache["val_tokens"]  # (Nv, h, w) int16
        self.text_states = cache["text_states"]  # (total pieces, 384) fp16, captions end to end
        self.text_offsets = cache["text_offsets"]  # (C + 1,) int64
        self.caption_ids = [cache[f"captions.{i}"] for i in range(len(train_records))]
        self.val_caption_ids = cache["val_captions"]  # the first distinct caption of each val image

        self.total_steps = int(train["steps"])
        self.batch_size = int(train["batch_size"])
        self.text_drop = float(train.get("text_drop", 0.1))
        if not 0.0 <= self.text_drop <= 1.0:
            raise RsgenError(f"train.text_drop must be in [0, 1], got {self.text_drop}")
        self.lr = (
            float(train["lr"]),
            int(train.get("warmup_steps", 0)),
            float(train.get("final_lr_ratio", 0.0)),
        )
        betas = tuple(float(b) for b in train.get("betas", (0.9, 0.96)))
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=self.lr[0],
            betas=betas,
            weight_decay=float(train.get("weight_decay", 0.01)),
        )
        self.grad_clip = grad_clip_of(train)
        self.bf16 = use_bf16(train.get("bf16", False), ctx.device)
        self.ema = EMA.from_config(self.model, train)

    # --- set-up -------------------------------------------------------------------------------

    def _check_sizes(self, tokenizer: VQTokenizer, image_size: int) -> None:
        cfg, codes = self.model.config, tokenizer.codebook_size
        if cfg.num_classes != codes:
            raise RsgenError(
                f"model.num_classes {cfg.num_classes} differs from the tokenizer's codebook size {codes}",
                self.tokenizer_path,
            )
        if self.scheduler.num_classes != codes:
            raise RsgenError(
                f"scheduler.num_classes {self.scheduler.num_classes} differs from the tokenizer's "
                f"codebook size {codes}",
                self.tokenizer_path,
            )
        if self.scheduler.num_train_timesteps != cfg.num_timesteps:
            raise RsgenError(
                f"scheduler.num_train_timesteps {self.scheduler.num_train_timesteps} differs from "
                f"model.num_timesteps {cfg.num_timesteps}"
            )
        grid = [image_size // tokenizer.downsample] * 2
        if image_size % tokenizer.downsample or grid != cfg.grid:
            raise RsgenError(
                f"data.image_size {image_size} gives a {grid} token grid with this tokenizer "
                f"(downsample {tokenizer.downsample}), but model.grid is {cfg.grid}"
            )

    def _precompute(
        self,
        tokenizer: VQTokenizer,
        train_records: list[CaptionRecord],
        val_records: list[CaptionRecord],
        data: dict[str, Any],
    ) -> dict[str, torch.Tensor]:
        """Tokens of every view and MiniLM states of every distinct caption, from the disk cache
        when an identical set-up computed them before."""
        size = int(data.get("image_size", 128))
        load_size = int(data.get("load_size", size))
        train_captions = [unique_captions(r.captions) for r in train_records]
        val_captions = [unique_captions(r.captions)[:1] for r in val_records]
        key_data = {
            "version": CACHE_VERSION,
            "tokenizer": hashlib.sha1((self.tokenizer_path / "model.safetensors").read_bytes()).hexdigest(),
            "train": [[str(r.path), list(c)] for r, c in zip(train_records, train_captions, strict=True)],
            "val": [[str(r.path), list(c)] for r, c in zip(val_records, val_captions, strict=True)],
            "sizes": [size, load_size, self.views, self.seed, self.model.config.max_text_tokens],
        }
        key = hashlib.sha1(json.dumps(key_data).encode()).hexdigest()[:20]
        path = cache_root() / "rsvq_tokens" / f"{key}.safetensors"
        if path.is_file():
            return load_file(str(path))

        tokens = self._encode_views(
            tokenizer,
            SceneImages(train_records, size, load_size, augment=False, progress=self.ctx.show_progress),
        )
        val_tokens = torch.zeros(0, *tokens.shape[2:], dtype=torch.int16)
        if val_records:
            val_images = SceneImages(val_records, size, load_size, augment=False, progress=False)
            val_tokens = self._encode_views(tokenizer, val_images, views=0)[:, 0]

        distinct: dict[str, int] = {}
        for captions in (*train_captions, *val_captions):
            for caption in captions:
                distinct.setdefault(caption, len(distinct))
        states, lengths = self._encode_texts(list(distinct))
        result = {
            "tokens": tokens,
            "val_tokens": val_tokens,
            "text_states": states,
            "text_offsets": torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]),
            "val_captions": torch.tensor([distinct[c[0]] for c in val_captions], dtype=torch.long),
        }
        for i, captions in enumerate(train_captions):
            result[f"captions.{i}"] = torch.tensor([distinct[c] for c in captions], dtype=torch.long)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp:
            save_file({k: v.contiguous() for k, v in result.items()}, str(tmp))
        return result

    def _encode_views(
        self, tokenizer: VQTokenizer, images: SceneImages, views: int | None = None
    ) -> torch.Tensor:
        """Token ids ``(N, 1 + views, h, w)`` int16 of every image's centre and augmented views,
        encoded chunk by chunk (the float views of a whole dataset would need GBs)."""
        views = self.views if views is None else views
        out = []
        bar = progress_bar(
            total=len(images) * (1 + views), desc="tokenize", unit="view", enabled=self.ctx.show_progress
        )
        for view in range(1 + views):
            rng = np.random.default_rng([self.seed, view])
            ids = []
            for start in range(0, len(images), ENCODE_CHUNK):
                chunk = images.images[start : start + ENCODE_CHUNK]
                if view == 0:
                    batch = torch.stack(
                        [image_to_tensor(center_square(image, images.size)) for image in chunk]
                    )
                else:
                    batch = torch.stack([augmented_view(image, images.size, rng) for image in chunk])
                ids.append(tokenizer.encode(batch.to(self.ctx.device)).cpu().to(torch.int16))
                bar.update(len(chunk))
            out.append(torch.cat(ids))
        bar.close()
        return torch.stack(out, dim=1)

    def _encode_texts(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """MiniLM token states of ``texts`` packed end to end ``(sum of lengths, 384)`` (fp16), and
        the lengths."""
        from rsgen.models.minilm import MAX_TOKENS, MiniLMTextEncoder

        encoder = MiniLMTextEncoder(max_tokens=min(MAX_TOKENS, self.model.config.max_text_tokens))
        packed, lengths = [], []
        for start in progress_bar(
            range(0, len(texts), TEXT_CHUNK), desc="captions", unit="batch", enabled=self.ctx.show_progress
        ):
            states, mask = encoder.token_states(texts[start : start + TEXT_CHUNK])
            for row, keep in zip(states, mask, strict=True):
                packed.append(row[keep].half().cpu())
                lengths.append(int(keep.sum()))
        return torch.cat(packed), torch.tensor(lengths, dtype=torch.long)

    # --- batches ------------------------------------------------------------------------------

    def text_batch(self, caption_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded states ``(B, L, 384)`` (float32, on the device) and mask of cached captions."""
        starts, ends = self.text_offsets[caption_ids], self.text_offsets[caption_ids + 1]
        lengths = ends - starts
        length = int(lengths.max())
        states = torch.zeros(len(caption_ids), length, self.text_states.shape[1])
        for row, (s, e) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            states[row, : e - s] = self.text_states[s:e].float()
        mask = torch.arange(length)[None, :] < lengths[:, None]
        return states.to(self.ctx.device), mask.to(self.ctx.device)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(tokens (B, h, w), text (B, L, 384), mask (B, L))`` of ``step``, a pure function of
        (seed, step)."""
        rng = np.random.default_rng([self.seed, step])
        count = len(self.tokens)
        images = rng.choice(count, size=min(self.batch_size, count), replace=False)
        views = rng.integers(0, self.tokens.shape[1], size=len(images))
        captions = [int(self.caption_ids[i][rng.integers(len(self.caption_ids[i]))]) for i in images]
        tokens = self.tokens[torch.from_numpy(images), torch.from_numpy(views)].long()
        text, mask = self.text_batch(torch.tensor(captions, dtype=torch.long))
        return tokens.to(self.ctx.device), text, mask

    def _generator(self, *key: int) -> torch.Generator:
        seed = int(np.random.SeedSequence([self.seed, *key]).generate_state(1)[0])
        return torch.Generator().manual_seed(seed)

    # --- the task protocol --------------------------------------------------------------------

    def train_step(self, step: int) -> dict[str, float]:
        self.model.train()
        x0, text, mask = self.batch(step)
        generator = self._generator(0, step)
        base, warmup, final = self.lr
        set_lr(self.optimizer, warmup_cosine(base, step, warmup, self.total_steps, final))
        text, mask = self.model.drop_text(text, mask, self.text_drop, generator)
        noisy = self.scheduler.training_batch(x0, generator)
        with torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(noisy.x_t, noisy.t, text, mask)
        loss = self.scheduler.loss(logits.float(), noisy)
        optimizer_step(self.optimizer, loss, self.grad_clip)
        return {"loss": loss.item(), "lr": self.optimizer.param_groups[0]["lr"]}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """The scheduler's loss and the x0 token accuracy on the held-out centre views, at
        :data:`VAL_FRACTIONS` of T with fixed noise; ``val_loss`` and ``val_token_acc`` average them."""
        if len(self.val_tokens) == 0:
            return {}
        self.model.eval()
        losses, accuracies, metrics = [], [], {}
        steps = self.scheduler.num_train_timesteps
        for t in sorted({min(int(round(f * steps)), steps - 1) for f in VAL_FRACTIONS}):
            generator = self._generator(1, t)
            total_loss, correct = 0.0, 0
            for x0, captions in zip(
                self.val_tokens.long().split(ENCODE_CHUNK),
                self.val_caption_ids.split(ENCODE_CHUNK),
                strict=True,
            ):
                noisy = self.scheduler.training_batch(x0, generator, t=t)
                text, mask = self.text_batch(captions)
                with torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    logits = self.model(
                        noisy.x_t.to(self.ctx.device), noisy.t.to(self.ctx.device), text, mask
                    )
                logits = logits.float().cpu()
                total_loss += self.scheduler.loss(logits, noisy).item() * len(x0)
                correct += int((logits.argmax(1) == x0).sum())
            losses.append(total_loss / len(self.val_tokens))
            accuracies.append(correct / self.val_tokens.numel())
            metrics[f"val_token_acc_t{t}"] = accuracies[-1]
        return {"val_loss": float(np.mean(losses)), "val_token_acc": float(np.mean(accuracies)), **metrics}

    def export(self, directory: str | Path, extra: dict[str, Any]) -> None:
        """A whole ``text_to_image`` pipeline folder (tokenizer, transformer, scheduler), loadable
        with ``TextToImage.from_pretrained``; ``tokenizer_source`` in the index names the frozen
        tokenizer folder it was trained on."""
        save_pipeline_folder(
            directory,
            PIPELINE_NAME,
            {
                "tokenizer": self.tokenizer.component_files(),
                "transformer": self.model.component_files(),
                "scheduler": self.scheduler.component_files(),
            },
            {**extra, "tokenizer_source": str(self.tokenizer_path.resolve())},
        )

