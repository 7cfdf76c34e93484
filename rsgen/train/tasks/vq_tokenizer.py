"""Training the text-to-image tokenizer: L1 + perceptual reconstruction + commitment, and
optionally VQGAN's adversarial loss.

The codebook itself follows the encoder by EMA (inside ``vector-quantize-pytorch``), restarting
codes unused for a while from the batch. Images are whole scenes of the caption dataset's
``split`` (``rsicd_aid150`` train), with ``val_fraction`` of every scene held out; validation
reports reconstruction PSNR/SSIM and codebook usage on them, and ``train.select`` picks ``best/``
(``val_psnr`` by default). ``train.bf16`` (true, false or auto) runs forward and backward under
bfloat16 autocast (about 2x faster on CPUs with bf16 instructions; ``auto`` turns it on only there).

Options for improving a trained tokenizer:

* ``init``: a tokenizer folder to start from (its config is the model's; ``model:`` may be left
  out, and must match when given).
* ``train.trainable: decoder`` trains the decoder alone: encoder and codebook are frozen, so
  every image keeps its tokens and a transformer trained on them needs no retraining.
* ``loss.gan`` > 0 adds a patch discriminator (``discriminator:``, see
  :mod:`rsgen.models.patch_discriminator`) with the hinge loss. The decoder's adversarial term
  ``-D(x̂)`` is weighted by ``loss.gan`` times VQGAN's adaptive weight (the ratio of the
  reconstruction and adversarial gradient norms at the decoder's last layer; off with
  ``loss.adaptive_gan_weight: false``) from step ``loss.gan_start``; the discriminator trains
  from step 0.
* ``train.select: val_fd_scene`` selects by the Fréchet distance between rs-scene features of
  the held-out images and of their reconstructions (PSNR falls as an adversarial decoder
  trades exactness for texture, so it cannot select one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from rsgen.checkpoint import optimizer_from_tensors, optimizer_to_tensors
from rsgen.data.captions import holdout_split, read_caption_records
from rsgen.data.images import tensor_to_image
from rsgen.data.paths import resolve_data_path
from rsgen.data.scene_images import SceneImages
from rsgen.device import use_bf16
from rsgen.errors import RsgenError
from rsgen.metrics import psnr, ssim
from rsgen.metrics.distribution import fd_of_sets
from rsgen.metrics.feature_sets import FeatureSet, extract_features
from rsgen.metrics.features import build_metric_extractor
from rsgen.models.feature_extractors import build_feature_extractor
from rsgen.models.patch_discriminator import PatchDiscriminator
from rsgen.models.vq_tokenizer import VQTokenizer, codebook_usage
from rsgen.train.distributed import DistContext
from rsgen.train.ema import EMA
from rsgen.train.losses import PerceptualLoss, adaptive_adversarial_weight, hinge_discriminator_loss
from rsgen.train.schedules import set_lr, warmup_cosine
from rsgen.train.tasks.base import SingleModelState, grad_clip_of, optimizer_step

SELECTION_MODES = {"val_psnr": "max", "val_ssim": "max", "val_fd_scene": "min"}
TRAINABLE = ("all", "decoder")


class VQTokenizerTask(SingleModelState):
    """Owns the tokenizer, its optimiser, the perceptual network, the optional discriminator
    and the scene images."""

    selection_metric = "val_psnr"
    selection_mode = "max"

    def __init__(self, config: dict[str, Any], ctx: DistContext) -> None:
        if ctx.distributed:
            raise RsgenError("task 'vq_tokenizer' trains in one process (run it without torchrun)")
        self.config, self.ctx = config, ctx
        data, train, loss = config["data"], config["train"], config.get("loss", {})
        self.model = initial_tokenizer(config).to(ctx.device)
        self.selection_metric = str(train.get("select", "val_psnr"))
        if self.selection_metric not in SELECTION_MODES:
            raise RsgenError(
                f"train.select must be one of {', '.join(SELECTION_MODES)}, not {self.selection_metric!r}"
            )
        self.selection_mode = SELECTION_MODES[self.selection_metric]  # type: ignore[assignment]
        self.trainable = str(train.get("trainable", "all"))
        if self.trainable not in TRAINABLE:
            raise RsgenError(f"train.trainable must be one of {', '.join(TRAINABLE)}, not {self.trainable!r}")
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
        if self.trainable == "decoder":
            self.model.encoder.requires_grad_(False)
            self.model.quantizer.requires_grad_(False)
        trained = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trained, lr=self.lr[0], betas=(0.5, 0.9))
        self.grad_clip = grad_clip_of(train)
        self.bf16 = use_bf16(train.get("bf16", False), ctx.device)
        self.weights = {
            "l1": float(loss.get("l1", 1.0)),
            "perceptual": float(loss.get("perceptual", 0.0)),
            "gan": float(loss.get("gan", 0.0)),
        }
        self.perceptual = None
        if self.weights["perceptual"] > 0:
            features = build_feature_extractor(
                loss.get("perceptual_network", "efficientnet-lite0"), loss.get("perceptual_weights")
            )
            self.perceptual = PerceptualLoss(features).to(ctx.device)
        self.gan_start = int(loss.get("gan_start", 0))
        self.adaptive_gan_weight = bool(loss.get("adaptive_gan_weight", True))
        self.discriminator = self.d_optimizer = None
        if self.weights["gan"] > 0:
            self.discriminator = PatchDiscriminator.from_config(
                {"name": "patch_discriminator", **config.get("discriminator", {})}
            ).to(ctx.device)
            d_lr = float(train.get("discriminator_lr", self.lr[0]))
            self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=d_lr, betas=(0.5, 0.9))
        self.scene_extractor = None
        self._val_scene: FeatureSet | None = None
        if self.selection_metric == "val_fd_scene":
            self.scene_extractor = build_metric_extractor("rs-scene")
        self.ema = EMA.from_config(self.model, train)

    def train_step(self, step: int) -> dict[str, float]:
        self.model.train()
        if self.trainable == "decoder":  # frozen codebook: no EMA moves, no restarts
            self.model.encoder.eval()
            self.model.quantizer.eval()
        _, images = self.images.batch(step, self.batch_size)
        images = images.to(self.ctx.device)
        base, warmup, final = self.lr
        set_lr(self.optimizer, warmup_cosine(base, step, warmup, self.total_steps, final))
        logs: dict[str, float] = {}
        with torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            with torch.set_grad_enabled(self.trainable == "all"):
                quantized, ids, commitment = self.model.quantize(images)
            reconstruction = self.model.decoder(quantized).float()
            l1 = F.l1_loss(reconstruction, images)
            rec_loss = self.weights["l1"] * l1
            if self.perceptual is not None:
                perceptual = self.perceptual(reconstruction, images).float()
                rec_loss = rec_loss + self.weights["perceptual"] * perceptual
                logs["perceptual"] = perceptual.item()
            total = rec_loss + commitment.float()
            if self.discriminator is not None and step >= self.gan_start:
                total = total + self._adversarial_term(reconstruction, rec_loss, logs)
        optimizer_step(self.optimizer, total, self.grad_clip)
        if self.discriminator is not None:
            logs.update(self._discriminator_step(images, reconstruction.detach(), step))
        logs.update({"loss": total.item(), "l1": l1.item(), "commitment": commitment.item()})
        logs["batch_perplexity"] = codebook_usage(ids, self.model.codebook_size)["perplexity"]
        logs["lr"] = self.optimizer.param_groups[0]["lr"]
        return logs

    def _adversarial_term(
        self, reconstruction: torch.Tensor, rec_loss: torch.Tensor, logs: dict
    ) -> torch.Tensor:
        """The decoder's weighted ``-D(x̂)`` (the discriminator's own weights get no gradient)."""
        assert self.discriminator is not None
        self.discriminator.requires_grad_(False)
        adversarial = -self.discriminator(reconstruction).float().mean()
        self.discriminator.requires_grad_(True)
        weight = torch.tensor(self.weights["gan"])
        if self.adaptive_gan_weight:
            weight = weight * adaptive_adversarial_weight(rec_loss, adversarial, self.model.last_layer)
        logs.update({"adversarial": adversarial.item(), "gan_weight": weight.item()})
        return weight * adversarial

    def _discriminator_step(
        self, images: torch.Tensor, reconstruction: torch.Tensor, step: int
    ) -> dict[str, float]:
        """One hinge-loss step of the discriminator on real images against reconstructions."""
        assert self.discriminator is not None and self.d_optimizer is not None
        self.discriminator.train()
        _, warmup, final = self.lr
        d_base = self.d_optimizer.defaults["lr"]
        set_lr(self.d_optimizer, warmup_cosine(d_base, step, warmup, self.total_steps, final))
        with torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            real, fake = self.discriminator(images).float(), self.discriminator(reconstruction).float()
            loss = hinge_discriminator_loss(real, fake)
        optimizer_step(self.d_optimizer, loss, self.grad_clip)
        return {"d_loss": loss.item(), "d_real": real.mean().item(), "d_fake": fake.mean().item()}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Reconstruction PSNR/SSIM (RGB, uint8) and codebook usage on the held-out images."""
        if self.val_images is None:
            return {}
        self.model.eval()
        psnrs, ssims, all_ids, reconstructions = [], [], [], []
        for chunk in self.val_images.fixed().split(32):
            reconstruction, ids, _ = self.model(chunk.to(self.ctx.device))
            reconstruction = reconstruction.float().cpu()
            all_ids.append(ids.cpu())
            reconstructions.append(reconstruction)
            for original, restored in zip(chunk, reconstruction, strict=True):
                a, b = tensor_to_image(restored), tensor_to_image(original)
                psnrs.append(psnr(a, b))
                ssims.append(ssim(a, b))
        usage = codebook_usage(torch.cat(all_ids), self.model.codebook_size)
        metrics = {
            "val_psnr": float(np.mean(psnrs)),
            "val_ssim": float(np.mean(ssims)),
            "val_perplexity": usage["perplexity"],
            "val_used_fraction": usage["used_fraction"],
        }
        if self.scene_extractor is not None:
            metrics["val_fd_scene"] = self._fd_scene(torch.cat(reconstructions))
        return metrics

    def _fd_scene(self, reconstructions: torch.Tensor) -> float:
        """FD between rs-scene features of the held-out images and of their reconstructions."""
        assert self.val_images is not None and self.scene_extractor is not None
        options = {"device": self.ctx.device, "progress": False}
        if self._val_scene is None:
            self._val_scene = extract_features(self.val_images.fixed(), self.scene_extractor, **options)
        decoded = extract_features(reconstructions, self.scene_extractor, **options)
        return fd_of_sets(self._val_scene, decoded).value

    # ------------------------------------------------------------------------------ state

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = super().state_tensors()
        if self.discriminator is not None and self.d_optimizer is not None:
            tensors.update({f"discriminator.{k}": v for k, v in self.discriminator.state_dict().items()})
            d_opt, meta["d_groups"] = optimizer_to_tensors(self.d_optimizer, "d_opt")
            tensors.update(d_opt)
        return tensors, meta

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        super().load_state(tensors, meta)
        if self.discriminator is not None and self.d_optimizer is not None and "d_groups" in meta:
            prefix = "discriminator."
            self.discriminator.load_state_dict(
                {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
            )
            optimizer_from_tensors(self.d_optimizer, tensors, "d_opt", meta["d_groups"])


def initial_tokenizer(config: dict[str, Any]) -> VQTokenizer:
    """A new tokenizer from ``model:``, or the trained one of ``init:`` (a folder, or a shipped
    name such as ``rsvq-cpu/tokenizer``; ``model:``, when given, must describe the same network)."""
    if not config.get("init"):
        return VQTokenizer.from_config(config["model"])
    folder = Path(str(config["init"])).expanduser()  # a folder, or a shipped name (from_pretrained)
    model = VQTokenizer.from_pretrained(folder).float()
    if config.get("model") is not None:
        wanted = VQTokenizer.from_config(config["model"]).config
        if wanted != model.config:
            raise RsgenError("init: the folder's tokenizer differs from the config's model:", folder)
    return model
