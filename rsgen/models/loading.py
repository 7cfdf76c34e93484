"""Build or load any rsgen network from what a folder or file says it is.

* :func:`build_model` — a randomly initialised network from a config dict whose ``name`` picks
  the class (the registry below).
* :func:`load_image_text_model` — any image–text model: the shipped ``rs-clip``, an rsgen
  folder, or a user's local open_clip / OpenAI-CLIP file.

Networks are imported when first asked for, so importing this module stays cheap.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from rsgen.errors import RsgenError
from rsgen.models.image_text import ImageTextModel
from rsgen.models.pretrained import PretrainedModel

#: Config ``name`` → ``module:Class`` of every network stored as a model folder.
MODEL_CLASSES: dict[str, str] = {
    "degan_generator": "rsgen.models.degan_generator:DEGANGenerator",
    "degan_discriminator": "rsgen.models.degan_discriminator:DEGANDiscriminator",
    "rs_clip": "rsgen.models.rs_clip:RSCLIP",
    "scene_classifier": "rsgen.models.scene_classifier:SceneClassifier",
    "vq_tokenizer": "rsgen.models.vq_tokenizer:VQTokenizer",
    "patch_discriminator": "rsgen.models.patch_discriminator:PatchDiscriminator",
    "rsvq_transformer": "rsgen.models.diffusion_transformer:DiffusionTransformer",
    "single_image_denoiser": "rsgen.models.single_image_denoiser:SingleImageDenoiser",
}
DEFAULT_IMAGE_TEXT_MODEL = "rs-clip"
# Weight files of an open_clip Hugging Face hub folder (with open_clip_config.json beside them).
OPEN_CLIP_HUB_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def model_class(name: str) -> type[PretrainedModel]:
    """The network class registered under config name ``name``; ValueError if unknown."""
    if name not in MODEL_CLASSES:
        raise ValueError(f"unknown model name {name!r}; known: {', '.join(MODEL_CLASSES)}")
    module, _, cls = MODEL_CLASSES[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def build_model(config: dict[str, Any]) -> PretrainedModel:
    """A randomly initialised network from a config dict whose ``name`` picks the class."""
    return model_class(str(config.get("name"))).from_config(config)


def load_image_text_model(
    name_or_path: str | Path = DEFAULT_IMAGE_TEXT_MODEL, device: str | torch.device = "cpu"
) -> ImageTextModel:
    """A shipped model name (``rs-clip``), an rsgen model folder, a local open_clip / OpenAI-CLIP
    weight file (``.pt``, ``.pth``, ``.bin``, ``.safetensors``) or an open_clip hub folder."""
    path = Path(name_or_path)
    hub_files = [path / name for name in OPEN_CLIP_HUB_FILES if (path / name).is_file()]
    if path.is_file() or hub_files:
        from rsgen.models.open_clip import OpenCLIPModel  # transformers: import only when needed

        model: ImageTextModel = OpenCLIPModel.from_file(path if path.is_file() else hub_files[0])
    elif path.exists() and not path.is_dir():
        raise RsgenError("not a regular file", path)
    else:
        model = model_class("rs_clip").from_pretrained(name_or_path)
    return model.to(device).eval()
