"""Training the text-to-image tokenizer: L1 + perceptual reconstruction + commitment.

The codebook itself follows the encoder by EMA (inside ``vector-quantize-pytorch``), restarting
codes unused for a while from the batch. Images are whole scenes of the caption dataset's
``split`` (``rsicd_aid150`` train), with ``val_fraction`` of every scene held out; validation
reports reconstruction PSNR/SSIM and codebook usage on them, and ``val_psnr`` picks ``best/``.
``train.bf16`` (true, false or auto) runs forward and backward under bfloat16 autocast (about
2x faster on CPUs with bf16 instructions; ``auto`` turns it on only there).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from rsgen.data.captions import holdout_split, read_caption_records
from rsgen.data.images import tensor_to_image
from rsgen.data.paths import resolve_data_path
from rsgen.data.scene_images import SceneImages
from rsgen.device import use_bf16
from rsgen.errors import RsgenError
from rsgen.metrics import psnr, ssim
from rsgen.models.feature_extractors import build_feature_extractor
from rsgen.models.vq_tokenizer import VQTokenizer, codebook_usage
from rsgen.train.distributed import DistContext
from rsgen.train.ema import EMA
from rsgen.train.losses import PerceptualLoss
from rsgen.train.schedules import set_lr, warmup_cosine
from rsgen.train.tasks.base import SingleModelState, grad_clip_of, optimizer_step


class VQTokenizerTask(SingleModelState):
    """Owns the tokenizer, its optimiser, the perceptual network and the scene images."""

    selection_metric = "val_psnr"
    selection_mode = "max"

    def __init__(self, config: dict[str, Any], ctx: DistContext) -> None:
        if ctx.distributed:
            raise RsgenError("task 'vq_tokenizer' trains in one process (run it without torchrun)")
        self.config, self.ctx = config, ctx
        data, train, loss = config["data"], config["train"], config.get("loss", {})
        self.model = VQTokenizer.from_config(config["model"]).to(ctx.device)
        size = int(data.get("image_size", 128))
        if size % self.model.downsample:
            raise RsgenError(f"data.image_size {size} must be divisible by {self.model.downsample}")
        seed = int(config.get("seed", 0))
        records = read_caption_records(resolve_data_path(data["dir"], data.get("root")), data.get("split"))
        train_records, val_records = holdout_split(records, float(data.get("val_fraction", 0.1)), seed)
        val_records = val_records[: int(data.get("val_images", len(val_records)))]
        load_size = int(data.get("load_size", size))
        show = ctx.show_progress
        self.images = SceneImages(train_records, size, load_size, bool(data.get("augment", True)), seed, show)
        self.val_images = (
            SceneImages(val_records, size, load_size, augment=False, progress=show) if val_records else None
        )

        self.total_steps = int(train["steps"])
        self.batch_size = int(train["batch_size"])
        self.lr = (
            float(train["lr"]),
            int(train.get("warmup_steps", 0)),
            float(train.get("final_lr_ratio", 0.0)),
        )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.lr[0], betas=(0.5, 0.9))
        self.grad_clip = grad_clip_of(train)
        self.bf16 = use_bf16(train.get("bf16", False), ctx.device)
        self.weights = {"l1": float(loss.get("l1", 1.0)), "perceptual": float(loss.get("perceptual", 0.0))}
        self.perceptual = None
        if self.weights["perceptual"] > 0:
            features = build_feature_extractor(
                loss.get("perceptual_network", "efficientnet-lite0"), loss.get("perceptual_weights")
            )
            self.perceptual = PerceptualLoss(features).to(ctx.device)
        self.ema = EMA.from_config(self.model, train)

    def train_step(self, step: int) -> dict[str, float]:
        self.model.train()
        _, images = self.images.batch(step, self.batch_size)
        images = images.to(self.ctx.device)
        base, warmup, final = self.lr
        set_lr(self.optimizer, warmup_cosine(base, step, warmup, self.total_steps, final))
        with torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            reconstruction, ids, commitment = self.model(images)
            reconstruction = reconstruction.float()
            l1 = F.l1_loss(reconstruction, images)
            perceptual = self.perceptual(reconstruction, images) if self.perceptual is not None else None
        total = self.weights["l1"] * l1 + commitment.float()
        if perceptual is not None:
            total = total + self.weights["perceptual"] * perceptual.float()
        optimizer_step(self.optimizer, total, self.grad_clip)
        logs = {"loss": total.item(), "l1": l1.item(), "commitment": commitment.item()}
        if perceptual is not None:
            logs["perceptual"] = perceptual.item()
        logs["batch_perplexity"] = codebook_usage(ids, self.model.codebook_size)["perplexity"]
        logs["lr"] = self.optimizer.param_groups[0]["lr"]
        return logs

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Reconstruction PSNR/SSIM (RGB, uint8) and codebook usage on the held-out images."""
        if self.val_images is None:
            return {}
        self.model.eval()
        psnrs, ssims, all_ids = [], [], []
        for chunk in self.val_images.fixed().split(32):
            reconstruction, ids, _ = self.model(chunk.to(self.ctx.device))
            all_ids.append(ids.cpu())
            for original, restored in zip(chunk, reconstruction.float().cpu(), strict=True):
                a, b = tensor_to_image(restored), tensor_to_image(original)
                psnrs.append(psnr(a, b))
                ssims.append(ssim(a, b))
        usage = codebook_usage(torch.cat(all_ids), self.model.codebook_size)
        return {
            "val_psnr": float(np.mean(psnrs)),
            "val_ssim": float(np.mean(ssims)),
            "val_perplexity": usage["perplexity"],
            "val_used_fraction": usage["used_fraction"],
        }
