"""Training task ``single_image``: a multi-scale diffusion model of one image (SinDDM,
the editing paper's Algorithm 1).

Each step picks one pyramid scale s uniformly and a batch of random timesteps; at scales
larger than ``data.crop`` the samples are random crops (the denoiser is fully convolutional
with a ~35 px receptive field, so a crop teaches it the same local statistics at a fraction
of the cost; this is what makes CPU training take minutes). Scales s > 0 train on
t < ``train.timestep_margin`` x T_s, the part of the schedule that sampling and editing use
(SinDDM trains all T everywhere). Validation is the denoising L1 at fixed noise, timesteps and
full-size scales, so ``best/`` holds the weights that denoise the image best.

The export is an ``editor`` pipeline folder: the denoiser, the ``multiscale`` scheduler with
the image's blur errors, and the pyramid sizes and image hash in ``model_index.json``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsgen.checkpoint import save_pipeline_folder
from rsgen.data.images import image_to_tensor
from rsgen.data.pyramid import SCALE_FACTOR, blur_errors, blurry_pyramid, build_pyramid, pyramid_shape
from rsgen.diffusion.multiscale import MultiScaleScheduler, MultiScaleSchedulerConfig
from rsgen.errors import RsgenError
from rsgen.io.rgb import read_rgb_uint8
from rsgen.models.single_image_denoiser import SingleImageDenoiser
from rsgen.train.distributed import DistContext
from rsgen.train.ema import EMA
from rsgen.train.schedules import set_lr, warmup_cosine
from rsgen.train.tasks.base import SingleModelState, grad_clip_of, optimizer_step

PIPELINE_NAME = "editor"
VALIDATION_TIMESTEPS = 4


def image_sha256(array: np.ndarray) -> str:
    """The content hash that names an image's cached model: its shape and its RGB bytes."""
    digest = hashlib.sha256(f"{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


class SingleImageTask(SingleModelState):
    """Owns the denoiser, its optimiser, the scheduler and the image pyramid."""

    selection_metric = "val_loss"
    selection_mode = "min"

    def __init__(self, config: dict[str, Any], ctx: DistContext) -> None:
        if ctx.distributed:
            raise RsgenError("task 'single_image' trains in one process (run it without torchrun)")
        self.config, self.ctx = config, ctx
        data, train = config["data"], config["train"]
        self.array = read_rgb_uint8(Path(data["image"]).expanduser())
        image = image_to_tensor(self.array)[None].to(ctx.device)
        height, width = self.array.shape[:2]
        self.shape = pyramid_shape(
            height, width, float(data.get("scale_factor", SCALE_FACTOR)), data.get("coarsest")
        )
        self.pyramid = build_pyramid(image, self.shape.sizes)
        self.blurry = blurry_pyramid(self.pyramid)
        scheduler_cfg = {k: v for k, v in config.get("scheduler", {}).items() if k != "name"}
        scheduler_cfg["blur_errors"] = blur_errors(self.pyramid)
        self.scheduler = MultiScaleScheduler(MultiScaleSchedulerConfig.from_dict(scheduler_cfg))
        self.model = SingleImageDenoiser.from_config(config["model"]).to(ctx.device)

        self.total_steps = int(train["steps"])
        self.batch_size = int(train["batch_size"])
        self.crop = int(data.get("crop", 64))
        margin = float(train.get("timestep_margin", 1.5))
        self.max_timesteps = [self.scheduler.num_train_timesteps] + [
            min(
                self.scheduler.num_train_timesteps,
                int(np.ceil(margin * (self.scheduler.start_timestep(s) + 1))),
            )
            for s in range(1, self.shape.num_scales)
        ]
        self.lr = (
            float(train["lr"]),
            int(train.get("warmup_steps", 0)),
            float(train.get("final_lr_ratio", 0.0)),
        )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.lr[0])
        self.grad_clip = grad_clip_of(train)
        self.ema = EMA.from_config(self.model, train)

    def train_step(self, step: int) -> dict[str, float]:
        self.model.train()
        scale = int(torch.randint(0, self.shape.num_scales, ()))
        sharp, blurry = self._crops(scale)
        batch = self.scheduler.training_batch(
            sharp, scale=scale, blurry=blurry, max_timestep=self.max_timesteps[scale]
        )
        base, warmup, final = self.lr
        set_lr(self.optimizer, warmup_cosine(base, step, warmup, self.total_steps, final))
        loss = self.scheduler.loss(self.model(batch.x_t, batch.t, scale), batch)
        optimizer_step(self.optimizer, loss, self.grad_clip)
        return {"loss": loss.item(), "scale": float(scale), "lr": self.optimizer.param_groups[0]["lr"]}

    def _crops(self, scale: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``batch_size`` random ``crop``-sized windows of scale ``scale`` (the whole scale when
        it is smaller), sharp and blurry at the same places."""
        sharp, blurry = self.pyramid[scale], self.blurry[scale]
        height, width = sharp.shape[-2:]
        ch, cw = min(self.crop, height), min(self.crop, width)
        ys = torch.randint(0, height - ch + 1, (self.batch_size,)).tolist()
        xs = torch.randint(0, width - cw + 1, (self.batch_size,)).tolist()

        def cut(image: torch.Tensor) -> torch.Tensor:
            return torch.cat([image[..., y : y + ch, x : x + cw] for y, x in zip(ys, xs, strict=True)])

        return cut(sharp), None if blurry is None else cut(blurry)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Denoising L1 at fixed noise and timesteps on every full scale (lower is better)."""
        self.model.eval()
        generator = torch.Generator().manual_seed(0)
        losses = []
        for scale in range(self.shape.num_scales):
            high = self.max_timesteps[scale]
            for t in np.linspace(0, high - 1, VALIDATION_TIMESTEPS).round().astype(int).tolist():
                batch = self.scheduler.training_batch(
                    self.pyramid[scale], generator, t=t, scale=scale, blurry=self.blurry[scale]
                )
                losses.append(float(self.scheduler.loss(self.model(batch.x_t, batch.t, scale), batch)))
        return {"val_loss": float(np.mean(losses))}

    def export(self, directory: str | Path, extra: dict[str, Any]) -> None:
        """An ``editor`` pipeline folder: denoiser + scheduler, pyramid and image hash in the index."""
        height, width = self.array.shape[:2]
        save_pipeline_folder(
            directory,
            PIPELINE_NAME,
            {
                "denoiser": self.model.component_files(),
                "scheduler": self.scheduler.component_files(),
            },
            {
                **extra,
                "image": {"sha256": image_sha256(self.array), "width": width, "height": height},
                "pyramid": {"sizes": [list(size) for size in self.shape.sizes], "factor": self.shape.factor},
            },
        )
