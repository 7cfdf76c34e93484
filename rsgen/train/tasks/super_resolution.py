"""DEGAN training: a content-loss (PSNR) warm-up, then the GAN phase with the paper's loss.

Generator loss in the GAN phase: 0.5 * MSE + 0.5 * perceptual (Charbonnier on deep
features) + 0.1 * BCE adversarial; the discriminator minimises BCE on real vs generated HR.
``train.grad_clip`` clips both networks' updates; ``train.ema_decay`` averages the generator
(validation and exports then use the average).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from rsgen.checkpoint import optimizer_from_tensors, optimizer_to_tensors
from rsgen.data.degradation import bicubic_downscale, bicubic_upscale, crop_to_multiple
from rsgen.data.images import image_to_tensor, tensor_to_image
from rsgen.data.paths import resolve_data_path
from rsgen.data.sr_dataset import SRPairSampler
from rsgen.io import list_images, read_rgb_uint8
from rsgen.metrics import psnr
from rsgen.models import DEGANConfig, DEGANDiscriminator, DEGANGenerator, DiscriminatorConfig
from rsgen.models.feature_extractors import build_feature_extractor
from rsgen.train.distributed import DistContext
from rsgen.train.ema import EMA
from rsgen.train.losses import PerceptualLoss, adversarial_loss
from rsgen.train.schedules import set_lr, step_decay
from rsgen.train.tasks.base import grad_clip_of, optimizer_step, weight_checksum


class SuperResolutionTask:
    """Owns the generator, discriminator, optimizers and data of a DEGAN training run."""

    selection_metric = "val_gain_db"
    selection_mode = "max"

    def __init__(self, config: dict[str, Any], ctx: DistContext) -> None:
        self.config, self.ctx = config, ctx
        train, data, loss = config["train"], config["data"], config["loss"]
        self.warmup_steps = int(train["warmup_steps"])
        self.total_steps = self.warmup_steps + int(train["gan_steps"])
        self.batch_size = max(int(train["batch_size"]) // ctx.world_size, 1)
        self.loss_weights = loss
        self.grad_clip = grad_clip_of(train)
        device = ctx.device

        self.generator = DEGANGenerator(DEGANConfig.from_dict(config["model"])).to(device)
        self.g_opt = torch.optim.Adam(
            self.generator.parameters(), lr=train["lr"], betas=tuple(train["betas"])
        )
        self.lr_schedule = (float(train["lr"]), list(train["lr_milestones"]), float(train["lr_gamma"]))
        self.g_train = ctx.wrap(self.generator)
        self.ema = EMA.from_config(self.generator, train)

        self.discriminator = self.d_opt = self.perceptual = None
        if self.total_steps > self.warmup_steps:
            self.discriminator = DEGANDiscriminator(
                DiscriminatorConfig.from_dict(config["discriminator"])
            ).to(device)
            self.d_opt = torch.optim.Adam(
                self.discriminator.parameters(), lr=train["lr"], betas=tuple(train["betas"])
            )
            self.d_train = ctx.wrap(self.discriminator)
            features = build_feature_extractor(loss["perceptual_network"], loss.get("perceptual_weights"))
            self.perceptual = PerceptualLoss(features).to(device)

        root = data.get("root")
        self.sampler = SRPairSampler(
            [resolve_data_path(p, root) for p in data["train"]],
            self.generator.scale,
            int(data["hr_crop"]),
            bool(data.get("augment", True)),
            seed=int(config.get("seed", 0)),
            rank=ctx.rank,
        )
        self.val_files = []
        if data.get("val"):
            files = list_images(resolve_data_path(data["val"], root))
            stride = max(len(files) // int(data.get("val_images", 14)), 1)
            self.val_files = files[::stride][: int(data.get("val_images", 14))]

    def train_step(self, step: int) -> dict[str, float]:
        """One optimisation step on the batch that belongs to ``step``."""
        self.generator.train()
        lr, hr = (t.to(self.ctx.device) for t in self.sampler.batch(step, self.batch_size))
        base, milestones, gamma = self.lr_schedule
        set_lr(self.g_opt, step_decay(base, step, milestones, gamma))
        if step < self.warmup_steps:
            logs = self._warmup_step(lr, hr)
        else:
            # The discriminator starts with the GAN phase: its schedule counts from there.
            d_milestones = [m - self.warmup_steps for m in milestones]
            set_lr(self.d_opt, step_decay(base, step - self.warmup_steps, d_milestones, gamma))
            logs = self._gan_step(lr, hr)
        logs["lr"] = self.g_opt.param_groups[0]["lr"]
        return logs

    def _warmup_step(self, lr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
        loss = F.mse_loss(self.g_train(lr), hr)
        norm = optimizer_step(self.g_opt, loss, self.grad_clip)
        return {"content": loss.item(), **_grad_norm_log(norm)}

    def _gan_step(self, lr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
        self.discriminator.train()
        sr = self.g_train(lr)
        # One discriminator forward per step (real and fake together): DDP reduces once.
        logits = self.d_train(torch.cat([hr, sr.detach()]))
        real_logits, fake_logits = logits.split(hr.shape[0])
        d_loss = adversarial_loss(real_logits, True) + adversarial_loss(fake_logits, False)
        optimizer_step(self.d_opt, d_loss, self.grad_clip)

        w = self.loss_weights
        content = F.mse_loss(sr, hr)
        perceptual = self.perceptual(sr, hr)
        # The generator's adversarial term goes through the bare discriminator with frozen
        # weights: its gradient must reach the generator only (and start no DDP reduction).
        self.discriminator.requires_grad_(False)
        adversarial = adversarial_loss(self.discriminator(sr), True)
        self.discriminator.requires_grad_(True)
        g_loss = w["content"] * content + w["perceptual"] * perceptual + w["adversarial"] * adversarial
        norm = optimizer_step(self.g_opt, g_loss, self.grad_clip)
        return {
            "content": content.item(),
            "perceptual": perceptual.item(),
            "adversarial": adversarial.item(),
            "g_total": g_loss.item(),
            "d_loss": d_loss.item(),
            **_grad_norm_log(norm),
        }

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean RGB PSNR (border cropped by the scale) of the model and of bicubic on the val subset."""
        if not self.val_files:
            return {}
        self.generator.eval()
        scale = self.generator.scale
        model_psnr, bicubic_psnr = [], []
        for path in self.val_files:
            hr = crop_to_multiple(Image.fromarray(read_rgb_uint8(path)), scale)
            lr = bicubic_downscale(hr, scale)
            sr = tensor_to_image(self.generator(image_to_tensor(lr)[None].to(self.ctx.device))[0])
            hr_array = np.asarray(hr)
            model_psnr.append(psnr(sr, hr_array, crop_border=scale))
            bicubic_psnr.append(psnr(np.asarray(bicubic_upscale(lr, scale)), hr_array, crop_border=scale))
        model, bicubic = float(np.mean(model_psnr)), float(np.mean(bicubic_psnr))
        return {"val_psnr": model, "val_psnr_bicubic": bicubic, "val_gain_db": model - bicubic}

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f"generator.{k}": v for k, v in self.generator.state_dict().items()}
        g_opt, g_groups = optimizer_to_tensors(self.g_opt, "g_opt")
        tensors.update(g_opt)
        meta: dict[str, Any] = {"g_groups": g_groups}
        if self.discriminator is not None:
            tensors.update({f"discriminator.{k}": v for k, v in self.discriminator.state_dict().items()})
            d_opt, d_groups = optimizer_to_tensors(self.d_opt, "d_opt")
            tensors.update(d_opt)
            meta["d_groups"] = d_groups
        return tensors, meta

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        def sub(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

        self.generator.load_state_dict(sub("generator."))
        optimizer_from_tensors(self.g_opt, tensors, "g_opt", meta["g_groups"])
        if self.discriminator is not None and "d_groups" in meta:
            self.discriminator.load_state_dict(sub("discriminator."))
            optimizer_from_tensors(self.d_opt, tensors, "d_opt", meta["d_groups"])

    @torch.no_grad()
    def weight_checksum(self) -> float:
        """A float fingerprint of the generator weights (to compare ranks)."""
        return weight_checksum(self.generator.parameters())

    def export(self, directory: str | Path, extra: dict[str, Any]) -> None:
        """Save the generator as a pretrained folder (fp16 safetensors + config.json)."""
        self.generator.save_pretrained(directory, extra)


def _grad_norm_log(norm: float | None) -> dict[str, float]:
    """The generator's gradient norm before clipping (logged only when clipping is on)."""
    return {} if norm is None else {"grad_norm": norm}
