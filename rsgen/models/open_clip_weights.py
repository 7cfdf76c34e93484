"""open_clip / OpenAI-CLIP ViT weight files: reading them, inferring the architecture from the
tensor shapes, and converting the keys to ``transformers.CLIPModel``'s layout.

Every problem (a ResNet or timm tower, layer scale, a missing or mis-shaped key, a TorchScript
archive) is a one-line :class:`~rsgen.errors.RsgenError` naming the file.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rsgen.checkpoint import read_weights_file
from rsgen.errors import RsgenError

CONFIG_NAME = "open_clip_config.json"
# Non-tensor metadata in state dicts taken from OpenAI's TorchScript models; open_clip drops them.
_OPENAI_META_KEYS = ("input_resolution", "context_length", "vocab_size")
# open_clip's vision head width is 64 except for the widest towers (ViT-H, ViT-g, ViT-bigG configs).
_VISION_HEAD_WIDTH = {1280: 80, 1408: 88, 1664: 104}
_UNSUPPORTED = (
    ("visual.layer1.", "a ResNet image tower"),
    ("visual.attnpool.", "a ResNet image tower"),
    ("visual.trunk.", "a timm image tower"),
    (".ls_1.", "layer-scale"),
    ("visual.attn_pool", "an attentional pooler"),
    ("text_model.", "a Hugging Face transformers checkpoint (convert it to open_clip keys)"),
    ("vision_model.", "a Hugging Face transformers checkpoint (convert it to open_clip keys)"),
)
_BLOCK_RE = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.")
_BLOCK_PARAMS = {
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
}
_RENAMES = {
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
}
_NOT_CLIP = "not an open_clip ViT checkpoint"


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of an open_clip / OpenAI-CLIP weight file, read by
    :func:`rsgen.checkpoint.read_weights_file`; OpenAI's TorchScript metadata entries (ints)
    are kept: they tell OpenAI's own weights apart."""
    return read_weights_file(path, allowed_non_tensors=_OPENAI_META_KEYS)


def read_open_clip_config(path: Path) -> dict[str, Any]:
    """The open_clip hub config at ``path`` (``{}`` if absent), normalised to
    ``{"model_cfg": {...}, "preprocess_cfg": {...}}``."""
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RsgenError(f"cannot read open_clip config ({exc})", path) from exc
    if not isinstance(config, dict):
        raise RsgenError("open_clip config is not a JSON object", path)
    if "model_cfg" not in config and "vision_cfg" in config:  # a bare open_clip model config
        config = {"model_cfg": config}
    for section in ("model_cfg", "preprocess_cfg"):
        if not isinstance(config.setdefault(section, {}), dict):
            raise RsgenError(f"{section} is not a JSON object", path)
    for stat in ("mean", "std"):
        value = config["preprocess_cfg"].get(stat)
        if value is not None and not (
            isinstance(value, list) and len(value) == 3 and all(isinstance(v, int | float) for v in value)
        ):
            raise RsgenError(f"preprocess_cfg.{stat} must be a list of 3 numbers", path)
    config["path"] = path
    return config


# ----------------------------------------------------------------------------- architecture


@dataclass(frozen=True)
class OpenCLIPSpec:
    """Sizes of an open_clip ViT CLIP, as inferred from its state dict."""

    embed_dim: int
    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_mlp: int
    vision_heads: int
    context_length: int
    vocab_size: int
    text_width: int
    text_layers: int
    text_mlp: int
    text_heads: int
    quick_gelu: bool

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every open_clip key of this architecture with its shape, in open_clip's order."""
        vw, tw, grid = self.vision_width, self.text_width, self.image_size // self.patch_size
        shapes: dict[str, tuple[int, ...]] = {
            "positional_embedding": (self.context_length, tw),
            "text_projection": (tw, self.embed_dim),
            "logit_scale": (),
            "visual.class_embedding": (vw,),
            "visual.positional_embedding": (grid * grid + 1, vw),
            "visual.proj": (vw, self.embed_dim),
            "visual.conv1.weight": (vw, 3, self.patch_size, self.patch_size),
            "visual.ln_pre.weight": (vw,),
            "visual.ln_pre.bias": (vw,),
        }
        shapes.update(_block_shapes("visual.transformer", self.vision_layers, vw, self.vision_mlp))
        shapes.update({"visual.ln_post.weight": (vw,), "visual.ln_post.bias": (vw,)})
        shapes.update(_block_shapes("transformer", self.text_layers, tw, self.text_mlp))
        shapes["token_embedding.weight"] = (self.vocab_size, tw)
        shapes.update({"ln_final.weight": (tw,), "ln_final.bias": (tw,)})
        return shapes


def _block_shapes(prefix: str, layers: int, width: int, mlp: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(layers):
        p = f"{prefix}.resblocks.{i}."
        shapes.update(
            {
                p + "attn.in_proj_weight": (3 * width, width),
                p + "attn.in_proj_bias": (3 * width,),
                p + "attn.out_proj.weight": (width, width),
                p + "attn.out_proj.bias": (width,),
                p + "ln_1.weight": (width,),
                p + "ln_1.bias": (width,),
                p + "mlp.c_fc.weight": (mlp, width),
                p + "mlp.c_fc.bias": (mlp,),
                p + "mlp.c_proj.weight": (width, mlp),
                p + "mlp.c_proj.bias": (width,),
                p + "ln_2.weight": (width,),
                p + "ln_2.bias": (width,),
            }
        )
    return shapes


def infer_spec(
    state: dict[str, torch.Tensor],
    path: Path,
    config: dict[str, Any] | None = None,
    quick_gelu: bool | None = None,
) -> OpenCLIPSpec:
    """Check ``state`` is an open_clip ViT CLIP and infer its sizes; ``config`` (from
    :func:`read_open_clip_config`) sets heads and the activation. Drops OpenAI metadata keys."""
    config = config or {}
    openai_meta = [k for k in _OPENAI_META_KEYS if k in state]
    for key in openai_meta:
        del state[key]
    _reject_unsupported(state, path)

    def shape(key: str, ndim: int) -> tuple[int, ...]:
        if key not in state:
            raise RsgenError(f"{_NOT_CLIP}: missing key {key}", path)
        if state[key].ndim != ndim:
            raise RsgenError(f"{_NOT_CLIP}: {key} has shape {tuple(state[key].shape)}", path)
        return tuple(state[key].shape)

    vision_width, _, patch_size, _ = shape("visual.conv1.weight", 4)
    positions = shape("visual.positional_embedding", 2)[0] - 1
    grid = math.isqrt(max(positions, 0))
    if grid * grid != positions or grid == 0:
        raise RsgenError(f"{_NOT_CLIP}: visual.positional_embedding has {positions + 1} rows", path)
    vocab_size, text_width = shape("token_embedding.weight", 2)
    model_cfg = config.get("model_cfg", {})
    spec = OpenCLIPSpec(
        embed_dim=shape("visual.proj", 2)[1],
        image_size=grid * patch_size,
        patch_size=patch_size,
        vision_width=vision_width,
        vision_layers=_count_layers(state, "visual.transformer"),
        vision_mlp=shape("visual.transformer.resblocks.0.mlp.c_fc.weight", 2)[0],
        vision_heads=_heads(model_cfg.get("vision_cfg"), vision_width, "vision", path),
        context_length=shape("positional_embedding", 2)[0],
        vocab_size=vocab_size,
        text_width=text_width,
        text_layers=_count_layers(state, "transformer"),
        text_mlp=shape("transformer.resblocks.0.mlp.c_fc.weight", 2)[0],
        text_heads=_heads(model_cfg.get("text_cfg"), text_width, "text", path),
        quick_gelu=_resolve_quick_gelu(config, quick_gelu, bool(openai_meta)),
    )
    _check_shapes(state, spec, path)
    _check_config_matches(config, spec)
    return spec


def _reject_unsupported(state: dict[str, torch.Tensor], path: Path) -> None:
    for key in state:
        for marker, what in _UNSUPPORTED:
            found = marker in key if marker.startswith(".") else key.startswith(marker)
            if found:
                raise RsgenError(f"{_NOT_CLIP}: {what} is not supported ({key})", path)
    if not any(key.startswith("visual.") for key in state):
        raise RsgenError(f"{_NOT_CLIP}: no visual.* keys (first key: {next(iter(state))})", path)


def _count_layers(state: dict[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(rf"^{re.escape(prefix)}\.resblocks\.(\d+)\.")
    indices = [int(m.group(1)) for key in state if (m := pattern.match(key))]
    return max(indices) + 1 if indices else 0


def _heads(tower_cfg: Any, width: int, tower: str, path: Path) -> int:
    # With a config, open_clip's own defaults for omitted values: vision head_width 64, text heads 8.
    if tower == "vision":
        head_width = tower_cfg.get("head_width", 64) if isinstance(tower_cfg, dict) else None
        heads = width // int(head_width or _VISION_HEAD_WIDTH.get(width, 64))
    else:
        heads = tower_cfg.get("heads", 8) if isinstance(tower_cfg, dict) else width // 64
    if not isinstance(heads, int) or heads < 1 or width % heads:
        raise RsgenError(
            f"cannot infer the attention heads of the {tower} tower (width {width}); "
            f"put its open_clip {CONFIG_NAME} next to the weights",
            path,
        )
    return heads


def _resolve_quick_gelu(config: dict[str, Any], requested: bool | None, openai_meta: bool) -> bool:
    model_cfg = config.get("model_cfg")
    if model_cfg:
        from_json = bool(model_cfg.get("quick_gelu", False))  # open_clip's default is nn.GELU
        if requested is not None and requested != from_json:
            raise RsgenError(
                f"quick_gelu={requested} contradicts this config (quick_gelu={from_json})", config["path"]
            )
        return from_json
    if requested is not None:
        return requested
    return openai_meta  # OpenAI's own models use QuickGELU


def _check_shapes(state: dict[str, torch.Tensor], spec: OpenCLIPSpec, path: Path) -> None:
    expected = spec.expected_shapes()
    for key, want in expected.items():
        if key not in state:
            raise RsgenError(f"{_NOT_CLIP}: missing key {key}", path)
        if tuple(state[key].shape) != want:
            raise RsgenError(f"{_NOT_CLIP}: {key} has shape {tuple(state[key].shape)}, expected {want}", path)
    extra = next((key for key in state if key not in expected), None)
    if extra is not None:
        raise RsgenError(f"{_NOT_CLIP}: unexpected key {extra}", path)


def _check_config_matches(config: dict[str, Any], spec: OpenCLIPSpec) -> None:
    model_cfg = config.get("model_cfg", {})
    checks = [
        (model_cfg, "embed_dim", spec.embed_dim),
        (model_cfg.get("vision_cfg"), "width", spec.vision_width),
        (model_cfg.get("vision_cfg"), "layers", spec.vision_layers),
        (model_cfg.get("vision_cfg"), "patch_size", spec.patch_size),
        (model_cfg.get("vision_cfg"), "image_size", spec.image_size),
        (model_cfg.get("text_cfg"), "width", spec.text_width),
        (model_cfg.get("text_cfg"), "layers", spec.text_layers),
        (model_cfg.get("text_cfg"), "context_length", spec.context_length),
        (model_cfg.get("text_cfg"), "vocab_size", spec.vocab_size),
    ]
    for section, key, actual in checks:
        value = section.get(key) if isinstance(section, dict) else None
        if isinstance(value, int) and value != actual:
            raise RsgenError(
                f"config does not match the weights ({key} {value}, weights have {actual})", config["path"]
            )


def build_clip(spec: OpenCLIPSpec) -> nn.Module:
    """An uninitialised ``transformers.CLIPModel`` of the given sizes."""
    from transformers import CLIPConfig, CLIPModel

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers: random init, overwritten by the strict load anyway
        no_init_weights = contextlib.nullcontext

    act = "quick_gelu" if spec.quick_gelu else "gelu"
    common = {"hidden_act": act, "layer_norm_eps": 1e-5, "projection_dim": spec.embed_dim}
    text = {
        "vocab_size": spec.vocab_size,
        "hidden_size": spec.text_width,
        "intermediate_size": spec.text_mlp,
        "num_hidden_layers": spec.text_layers,
        "num_attention_heads": spec.text_heads,
        "max_position_embeddings": spec.context_length,
        "pad_token_id": 0,
        "bos_token_id": spec.vocab_size - 2,
        "eos_token_id": spec.vocab_size - 1,
        **common,
    }
    vision = {
        "hidden_size": spec.vision_width,
        "intermediate_size": spec.vision_mlp,
        "num_hidden_layers": spec.vision_layers,
        "num_attention_heads": spec.vision_heads,
        "image_size": spec.image_size,
        "patch_size": spec.patch_size,
        **common,
    }
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=spec.embed_dim)
    with no_init_weights():
        return CLIPModel(config)


def convert_state_dict(state: dict[str, torch.Tensor], spec: OpenCLIPSpec) -> dict[str, torch.Tensor]:
    """open_clip keys → ``transformers.CLIPModel`` keys (float32): in_proj split into q/k/v,
    projection matrices transposed into ``nn.Linear`` weights."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        value = value.float() if value.is_floating_point() else value
        if key in _RENAMES:
            out[_RENAMES[key]] = value
        elif key == "visual.proj":
            out["visual_projection.weight"] = value.t()
        elif key == "text_projection":
            out["text_projection.weight"] = value.t()
        else:
            match = _BLOCK_RE.match(key)
            if match is None:  # infer_spec has checked every key
                raise AssertionError(key)
            tower = "vision_model" if match.group(1) else "text_model"
            prefix = f"{tower}.encoder.layers.{match.group(2)}."
            param = key[match.end() :]
            if param.startswith("attn.in_proj_"):
                kind = param.removeprefix("attn.in_proj_")
                for name, part in zip(("q", "k", "v"), value.chunk(3, dim=0), strict=True):
                    out[f"{prefix}self_attn.{name}_proj.{kind}"] = part
            else:
                out[prefix + _BLOCK_PARAMS[param]] = value
    return out
