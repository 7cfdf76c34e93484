"""RS-CLIP training: symmetric InfoNCE between image and caption embeddings, learned temperature.

A batch holds distinct images, each with one random cached augmented view and one random
distinct caption of its own. Validation (held-out training images) reports the retrieval
numbers of :mod:`rsgen.metrics.retrieval`; ``val_score`` (the mean of the six recalls and the
zero-shot accuracy) picks the ``best/`` export.

``data.crop_scale`` and ``data.jitter`` set how the cached views are augmented (default: the
views ``rs-clip`` trained on); ``rs-clip-judge`` draws other views with them and another seed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from rsgen.data.captions import caption_queries, scene_labels, unique_captions, zero_shot_prompt
from rsgen.files import cache_root
from rsgen.metrics.retrieval import retrieval_scores
from rsgen.models.rs_clip import RSCLIP, RSCLIPConfig
from rsgen.train.distributed import DistContext
from rsgen.train.feature_cache import Augmentation
from rsgen.train.tasks.cached_images import CachedImageTask


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric cross-entropy over the in-batch similarity matrix (pairs on the diagonal)."""
    logits = scale * F.normalize(image_emb, dim=-1) @ F.normalize(text_emb, dim=-1).T
    target = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class RSCLIPTask(CachedImageTask):
    def __init__(self, config: dict[str, Any], ctx: DistContext) -> None:
        self.augment = Augmentation.from_config(config["data"])
        model = RSCLIP(RSCLIPConfig.from_dict(config["model"]))
        super().__init__(config, ctx, model, model.image_tower)
        self.model: RSCLIP
        # MiniLM is frozen: embed every caption once.
        self.captions = [unique_captions(r.captions) for r in self.train_records]
        flat = sorted({c for caps in self.captions for c in caps})
        texts, self.val_caption_image = caption_queries(self.val_records)
        scenes, self.val_labels = scene_labels(self.train_records + self.val_records)
        self.val_labels = self.val_labels[len(self.train_records) :]
        prompts = [zero_shot_prompt(s) for s in scenes]
        features = self._text_tower_features(flat + texts + prompts)
        position = {c: i for i, c in enumerate(flat)}
        self.caption_rows = [torch.tensor([position[c] for c in caps]) for caps in self.captions]
        self.train_text = features[: len(flat)]
        self.val_text = features[len(flat) : len(flat) + len(texts)]
        self.prompt_text = features[len(flat) + len(texts) :]

    def _text_tower_features(self, texts: list[str]) -> torch.Tensor:
        """MiniLM features of ``texts`` (cached on disk, keyed by the texts)."""
        key = hashlib.sha1(json.dumps(texts).encode()).hexdigest()[:16]
        path = cache_root() / "features" / f"minilm-{key}.safetensors"
        if path.is_file():
            return load_file(str(path))["features"]
        chunks = [self.model.text_tower(texts[i : i + 256]).cpu() for i in range(0, len(texts), 256)]
        features = torch.cat(chunks)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"features": features.contiguous()}, str(path))
        return features

    def train_step(self, step: int) -> dict[str, float]:
        self.model.train()
        indices, inputs = self.sample_batch()
        rows = torch.stack(
            [self.caption_rows[i][torch.randint(len(self.caption_rows[i]), ())] for i in indices.tolist()]
        )
        image_emb = self.model.image_head(self.pooled_features(inputs))
        text_emb = self.model.text_head(self.train_text[rows].to(self.ctx.device))
        scale = self.model.clamped_logit_scale()
        loss = contrastive_loss(image_emb, text_emb, scale)
        lr = self.optimize(loss, step)
        return {"loss": loss.item(), "temperature": 1.0 / scale.item(), "lr": lr}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if not self.val_records:
            return {}
        self.model.eval()
        device = self.ctx.device
        pooled = torch.cat([self.pooled_features(chunk) for chunk in self.val_inputs.split(256)])
        image_emb = F.normalize(self.model.image_head(pooled), dim=-1).cpu()
        text_emb = F.normalize(self.model.text_head(self.val_text.to(device)), dim=-1).cpu()
        class_emb = F.normalize(self.model.text_head(self.prompt_text.to(device)), dim=-1).cpu()
        scores = retrieval_scores(image_emb, text_emb, self.val_caption_image, class_emb, self.val_labels)
        scores["score"] = (6 * scores["mean_recall"] + scores["zeroshot_acc"]) / 7
        return {f"val_{k}": v for k, v in scores.items()}
