"""rs-scene training: cross-entropy (label smoothing) over the scenes of a caption file.

The classes are the scene names found in the training records (the 30 AID scenes for
``rsicd_aid150``), sorted; ``val_score`` is the held-out accuracy.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from rsgen.data.captions import scene_labels
from rsgen.models.scene_classifier import SceneClassifier, SceneClassifierConfig
from rsgen.train.distributed import DistContext
from rsgen.train.tasks.cached_images import CachedImageTask


class SceneClassifierTask(CachedImageTask):
    def __init__(self, config: dict[str, Any], ctx: DistContext) -> None:
        from rsgen.data.captions import read_caption_records
        from rsgen.data.paths import resolve_data_path

        data = config["data"]
        records = read_caption_records(
            resolve_data_path(data["dir"], data.get("root")), data.get("split", "train")
        )
        classes, _ = scene_labels(records)
        model_config = SceneClassifierConfig.from_dict({**config["model"], "classes": classes})
        model = SceneClassifier(model_config)
        super().__init__(config, ctx, model, model.trunk)
        self.model: SceneClassifier
        position = {c: i for i, c in enumerate(classes)}
        self.train_labels = torch.tensor([position[r.scene] for r in self.train_records])
        self.val_labels = torch.tensor([position[r.scene] for r in self.val_records])
        self.label_smoothing = float(config["train"].get("label_smoothing", 0.0))

    def train_step(self, step: int) -> dict[str, float]:
        self.model.train()
        indices, inputs = self.sample_batch()
        logits = self.model.classify_features(self.pooled_features(inputs))
        labels = self.train_labels[indices].to(self.ctx.device)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        lr = self.optimize(loss, step)
        accuracy = (logits.argmax(dim=1) == labels).float().mean().item()
        return {"loss": loss.item(), "train_acc": accuracy, "lr": lr}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if not self.val_records:
            return {}
        self.model.eval()
        logits = torch.cat(
            [
                self.model.classify_features(self.pooled_features(chunk)).cpu()
                for chunk in self.val_inputs.split(256)
            ]
        )
        accuracy = float((logits.argmax(dim=1) == self.val_labels).float().mean())
        return {"val_acc": accuracy, "val_score": accuracy}
