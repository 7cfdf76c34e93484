"""Real CLIP-family weights from a local open_clip / OpenAI-CLIP state-dict file.

:class:`OpenCLIPModel` reads a plain state dict in open_clip's key layout (RemoteCLIP's
``RemoteCLIP-ViT-B-32.pt``, OpenAI ViT state dicts, open_clip hub ``open_clip_model.safetensors``),
checks every key and shape, infers the architecture from the tensor shapes and runs it with
``transformers.CLIPModel`` (the same computation: pre-LN transformer blocks, class-token image
pooling; the text tower is pooled here, at the argmax token id, exactly as open_clip does).

Only ViT image towers are supported; ResNet towers, layer-scale and attentional poolers are
rejected with a one-line :class:`~rsgen.errors.RsgenError`. Nothing is downloaded: the BPE
tokenizer files must lie next to the weights, be passed explicitly, or come from an installed
``open_clip`` package (see :func:`find_tokenizer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from rsgen.errors import RsgenError
from rsgen.models.clip_tokenizer import BPE_GZ_NAME, CLIPBPETokenizer, find_tokenizer
from rsgen.models.image_text import ImageTextModel, resize_center_crop
from rsgen.models.open_clip_weights import (
    CONFIG_NAME,
    build_clip,
    convert_state_dict,
    infer_spec,
    read_open_clip_config,
    read_state_dict,
)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class OpenCLIPModel(ImageTextModel):
    """A CLIP ViT (open_clip / OpenAI layout) behind rsgen's :class:`ImageTextModel` interface.

    Build it with :meth:`from_file`. Parameters are frozen and the model is in eval mode;
    gradients still flow to the input pixels. ``logit_scale`` is the checkpoint's (log) scale,
    as in open_clip: logits are ``logit_scale.exp() * image_emb @ text_emb.T``.
    """

    def __init__(
        self,
        clip: nn.Module,
        tokenizer: CLIPBPETokenizer | None,
        *,
        source: Path,
        name: str,
        image_size: int,
        context_length: int,
        mean: Sequence[float] = OPENAI_MEAN,
        std: Sequence[float] = OPENAI_STD,
    ) -> None:
        super().__init__()
        self.clip = clip
        self.tokenizer = tokenizer
        self.source = source
        self.name = name
        self.image_size = image_size
        self.embed_dim = int(clip.config.projection_dim)
        self.context_length = context_length
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        tokenizer: str | Path | None = None,
        quick_gelu: bool | None = None,
    ) -> OpenCLIPModel:
        """Load a local open_clip / OpenAI-CLIP ViT state dict (``.pt``, ``.pth``, ``.bin``,
        ``.safetensors``).

        Sizes (widths, depths, patch and image size, context length, vocabulary, embedding
        dimension) come from the tensor shapes; attention heads are ``width // 64`` (open_clip's
        head width; 80/88/104 for the ViT-H/g/bigG vision widths 1280/1408/1664). An
        ``open_clip_config.json`` (open_clip hub format) next to the file overrides heads,
        ``quick_gelu`` and the normalisation mean/std.

        The activation cannot be read from weights. Precedence: the json's ``quick_gelu``, then the
        ``quick_gelu`` argument, then QuickGELU if the file carries OpenAI's TorchScript metadata
        keys, else **nn.GELU** — right for open_clip's ``ViT-B-32`` config (RemoteCLIP, LAION
        weights); pass ``quick_gelu=True`` for OpenAI's own weights or ``*-quickgelu`` models.

        ``tokenizer``: a folder with ``vocab.json`` + ``merges.txt`` (Hugging Face CLIPTokenizer)
        or an open_clip ``bpe_simple_vocab_16e6.txt.gz``; default: see :func:`find_tokenizer`.
        Without a tokenizer the image tower works and text encoding raises :class:`RsgenError`.
        """
        path = Path(path)
        state = read_state_dict(path)
        config = read_open_clip_config(path.parent / CONFIG_NAME)
        spec = infer_spec(state, path, config, quick_gelu)
        clip = build_clip(spec)
        clip.load_state_dict(convert_state_dict(state, spec), strict=True)
        tokenizer_path = find_tokenizer(path, tokenizer)
        bpe = None if tokenizer_path is None else CLIPBPETokenizer.from_path(tokenizer_path)
        if bpe is not None and bpe.vocab_size > spec.vocab_size:
            raise RsgenError(
                f"tokenizer {tokenizer_path} has {bpe.vocab_size} tokens but the checkpoint's "
                f"vocabulary has {spec.vocab_size}",
                path,
            )
        preprocess = config.get("preprocess_cfg", {})
        return cls(
            clip,
            bpe,
            source=path,
            name=f"open_clip:{_model_stem(path)}",
            image_size=spec.image_size,
            context_length=spec.context_length,
            mean=preprocess.get("mean") or OPENAI_MEAN,
            std=preprocess.get("std") or OPENAI_STD,
        )

    @property
    def logit_scale(self) -> torch.Tensor:
        """The checkpoint's learned log logit scale (a 0-d tensor)."""
        return self.clip.logit_scale

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images, any size → resized, centre-cropped, normalised pixels (differentiable)."""
        pixels = resize_center_crop((images.to(self.mean.dtype) + 1) / 2, self.image_size)
        return (pixels - self.mean) / self.std

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Preprocessed pixels ``(B, 3, S, S)`` → projected class-token features ``(B, embed_dim)``."""
        pooled = self.clip.vision_model(pixel_values=pixels).pooler_output
        return self.clip.visual_projection(pooled)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts → token ids ``(B, context_length)`` as open_clip's tokenizer makes them."""
        if self.tokenizer is None:
            raise RsgenError(
                "no CLIP tokenizer found: put vocab.json + merges.txt (Hugging Face CLIPTokenizer) or "
                f"{BPE_GZ_NAME} (open_clip) next to the weights, or pass tokenizer=",
                self.source,
            )
        return self.tokenizer(texts, self.context_length)

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts → projected features at the end-of-text token ``(B, embed_dim)``."""
        ids = self.tokenize(texts).to(self.device)
        hidden = self.clip.text_model(input_ids=ids).last_hidden_state
        # open_clip pools at argmax(token id): end-of-text has the largest id. transformers pools
        # at the first eos_token_id instead, so it is done here to match open_clip exactly.
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), ids.argmax(dim=-1)]
        return self.clip.text_projection(pooled)


def _model_stem(path: Path) -> str:
    # open_clip hub files all share one stem; their folder names the model.
    generic = {"open_clip_model", "open_clip_pytorch_model", "pytorch_model", "model"}
    return path.parent.name if path.stem in generic and path.parent.name else path.stem
