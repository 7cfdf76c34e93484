"""What the ``rs_clip`` and ``scene_classifier`` tasks share: captioned images of one split, a
held-out validation part, cached EfficientNet-Lite0 feature maps of augmented views (see
:mod:`rsgen.train.feature_cache`), AdamW with warm-up + cosine LR (``train.grad_clip`` and
``train.ema_decay`` apply), and checkpoint state.

Every step draws ``batch_size`` distinct images and one random cached view of each, so what a
step sees depends only on (seed, step): ``--resume`` replays exactly. These tasks run in one
process (the cached inputs make a step cost milliseconds to seconds on a CPU).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from rsgen.data.captions import holdout_split, read_caption_records
from rsgen.data.paths import resolve_data_path
from rsgen.errors import RsgenError
from rsgen.models.efficientnet_lite0 import EfficientNetLite0Trunk
from rsgen.train.distributed import DistContext
from rsgen.train.ema import EMA
from rsgen.train.feature_cache import (
    CACHE_BLOCK,
    DEFAULT_AUGMENTATION,
    Augmentation,
    cached_feature_maps,
    derived_features,
)
from rsgen.train.schedules import set_lr, warmup_cosine
from rsgen.train.tasks.base import SingleModelState, grad_clip_of, optimizer_step

MAX_TUNED_BLOCKS = 16 - CACHE_BLOCK


class CachedImageTask(SingleModelState):
    """Base of tasks whose image tower is an :class:`EfficientNetLite0Trunk` fed from the cache."""

    selection_metric = "val_score"
    #: How the cached views are augmented; a subclass may set its own before ``__init__``.
    augment: Augmentation = DEFAULT_AUGMENTATION
    selection_mode = "max"

    def __init__(
        self, config: dict[str, Any], ctx: DistContext, model: nn.Module, trunk: EfficientNetLite0Trunk
    ):
        if ctx.distributed:
            raise RsgenError(f"task {config['task']!r} trains in one process (run it without torchrun)")
        self.config, self.ctx, self.model, self.trunk = config, ctx, model.to(ctx.device), trunk
        if trunk.split < CACHE_BLOCK:
            raise RsgenError(f"model.tuned_blocks must be at most {MAX_TUNED_BLOCKS} (features are cached)")
        data, train = config["data"], config["train"]
        self.seed = int(config.get("seed", 0))
        self.data_dir = resolve_data_path(data["dir"], data.get("root"))
        records = read_caption_records(self.data_dir, data.get("split", "train"))
        self.train_records, self.val_records = holdout_split(
            records, float(data.get("val_fraction", 0.1)), self.seed
        )
        inputs = self._frozen_inputs([r.path for r in records], int(data["views"]))
        index = {r.path: i for i, r in enumerate(records)}
        self.train_inputs = inputs[:, [index[r.path] for r in self.train_records]]
        self.val_inputs = inputs[0, [index[r.path] for r in self.val_records]]

        self.total_steps = int(train["steps"])
        self.batch_size = min(int(train["batch_size"]), len(self.train_records))
        self.lr = (
            float(train["lr"]),
            int(train.get("warmup_steps", 0)),
            float(train.get("final_lr_ratio", 0.0)),
        )
        self.optimizer = torch.optim.AdamW(
            _param_groups(model, float(train.get("weight_decay", 0.0))), lr=self.lr[0], betas=(0.9, 0.999)
        )
        self.grad_clip = grad_clip_of(train)
        self.ema = EMA.from_config(self.model, train)

    def _frozen_inputs(self, paths: list[Path], views: int) -> torch.Tensor:
        """Cached inputs of the tuned part for every view: block-``CACHE_BLOCK`` maps, run through
        the frozen blocks in between once (and pooled when nothing is tuned)."""
        if self.trunk.split == CACHE_BLOCK:
            return cached_feature_maps(paths, views, self.seed, device=self.ctx.device, augment=self.augment)
        pooled = len(self.trunk.tuned) == 0

        def frozen_rest(maps: torch.Tensor) -> torch.Tensor:
            out = self.trunk.frozen_features_from_block(maps.to(self.ctx.device), CACHE_BLOCK)
            return out.mean(dim=(-2, -1)) if pooled else out

        name = f"to{self.trunk.split}" + ("-pooled" if pooled else "")
        return derived_features(
            paths, views, self.seed, name, frozen_rest, progress=self.ctx.show_progress, augment=self.augment
        )

    def pooled_features(self, inputs: torch.Tensor) -> torch.Tensor:
        """Cached inputs of a batch → pooled 1280-d image features (through the tuned blocks)."""
        inputs = inputs.to(self.ctx.device).float()
        return inputs if inputs.ndim == 2 else self.trunk.tuned_features(inputs)

    def sample_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Distinct training images and one random view of each: ``(indices, inputs)``."""
        indices = torch.randperm(len(self.train_records))[: self.batch_size]
        views = torch.randint(self.train_inputs.shape[0], (len(indices),))
        return indices, self.train_inputs[views, indices]

    def optimize(self, loss: torch.Tensor, step: int) -> float:
        """One AdamW step on ``loss`` at the scheduled learning rate; returns the rate."""
        base, warmup, final = self.lr
        lr = warmup_cosine(base, step, warmup, self.total_steps, final)
        set_lr(self.optimizer, lr)
        optimizer_step(self.optimizer, loss, self.grad_clip)
        return lr


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices and kernels only, not on biases, norms or the temperature."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
