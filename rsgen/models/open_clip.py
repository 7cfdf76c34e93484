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

import contextlib
import gzip
import html
import json
import math
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rsgen.errors import RsgenError
from rsgen.models.image_text import ImageTextModel, resize_center_crop

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
CONFIG_NAME = "open_clip_config.json"
BPE_GZ_NAME = "bpe_simple_vocab_16e6.txt.gz"
HF_TOKENIZER_FILES = ("vocab.json", "merges.txt")
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
# OpenAI's simple_tokenizer keeps merges 1 .. 49152-256-2 of its .gz (line 0 is a header).
_BPE_GZ_MERGES = 49152 - 256 - 2
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


# ----------------------------------------------------------------------------- the model


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


# ----------------------------------------------------------------------------- reading files


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a ``torch.save`` file (``weights_only=True``),
    unwrapped from ``state_dict`` / ``model`` and stripped of a ``module.`` prefix."""
    path = Path(path)
    if not path.is_file():
        raise RsgenError("weight file not found", path)
    if path.stat().st_size == 0:
        raise RsgenError("empty weight file", path)
    if _is_torchscript(path):
        raise RsgenError(
            "is a TorchScript archive (OpenAI's JIT .pt); save torch.jit.load(path).state_dict() "
            "with torch.save and load that",
            path,
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to parse is a bad user file
        first_line = (str(exc).strip().splitlines() or [""])[0][:200]
        raise RsgenError(f"cannot read weight file ({type(exc).__name__}: {first_line})", path) from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not state:
        raise RsgenError("weight file does not hold a state dict", path)
    if all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    bad = next(
        (k for k, v in state.items() if not isinstance(v, torch.Tensor) and k not in _OPENAI_META_KEYS), None
    )
    if bad is not None:
        raise RsgenError(f"{_NOT_CLIP}: entry {bad!r} is not a tensor", path)
    return state


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/")[-1] == "constants.pkl" for name in archive.namelist())


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


# ----------------------------------------------------------------------------- tokenizer


def bytes_to_unicode() -> dict[int, str]:
    """OpenAI CLIP's reversible byte → printable unicode character table (GPT-2's)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def find_tokenizer(weights: str | Path, explicit: str | Path | None = None) -> Path | None:
    """Where the BPE files are: ``explicit`` (a folder with vocab.json + merges.txt or a
    ``bpe_simple_vocab_16e6.txt.gz``, or such a .gz file); else those files next to ``weights``;
    else the .gz inside an installed ``open_clip`` (or OpenAI ``clip``) package, found without
    importing it. Returns a folder (HF files) or a .gz path, or None."""
    if explicit is not None:
        explicit = Path(explicit)
        found = _tokenizer_in(explicit) if explicit.is_dir() else explicit
        if found is None or not found.exists():
            raise RsgenError(f"no vocab.json + merges.txt or {BPE_GZ_NAME} here", explicit)
        return found
    found = _tokenizer_in(Path(weights).parent)
    if found is not None:
        return found
    import importlib.util

    for package in ("open_clip", "clip"):
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            continue
        for location in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(location) / BPE_GZ_NAME
            if candidate.is_file():
                return candidate
    return None


def _tokenizer_in(folder: Path) -> Path | None:
    if all((folder / name).is_file() for name in HF_TOKENIZER_FILES):
        return folder
    return folder / BPE_GZ_NAME if (folder / BPE_GZ_NAME).is_file() else None


class CLIPBPETokenizer:
    """CLIP's byte-level BPE (a ``transformers.CLIPTokenizer``) with open_clip's framing:
    ``[start, tokens..., end]`` padded with 0, truncated with end-of-text kept last."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
        from transformers import CLIPTokenizer

        if SOT not in vocab or EOT not in vocab:
            raise ValueError(f"vocabulary lacks {SOT} or {EOT}")
        self.hf = CLIPTokenizer(vocab=vocab, merges=merges)
        self.sot, self.eot = vocab[SOT], vocab[EOT]
        self.vocab_size = max(vocab.values()) + 1

    @classmethod
    def from_path(cls, path: str | Path) -> CLIPBPETokenizer:
        """A folder with ``vocab.json`` + ``merges.txt``, or an open_clip BPE ``.gz`` file."""
        path = Path(path)
        try:
            vocab, merges = _read_bpe_gz(path) if path.is_file() else _read_hf_files(path)
            return cls(vocab, merges)
        except Exception as exc:  # noqa: BLE001 - any failure to parse is a bad user file
            first_line = (str(exc).strip().splitlines() or [""])[0][:200]
            raise RsgenError(
                f"cannot read CLIP tokenizer ({type(exc).__name__}: {first_line})", path
            ) from exc

    def __call__(self, texts: Sequence[str], context_length: int) -> torch.Tensor:
        """Texts → ``(len(texts), context_length)`` int64 token ids."""
        if isinstance(texts, str):
            texts = [texts]
        encoded = self.hf([_clean_text(t) for t in texts], add_special_tokens=False)["input_ids"]
        ids = torch.zeros(len(encoded), context_length, dtype=torch.long)
        for row, tokens in enumerate(encoded):
            tokens = [self.sot, *tokens, self.eot][:context_length]
            tokens[-1] = self.eot
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        return ids


def _clean_text(text: str) -> str:
    # open_clip: whitespace_clean(basic_clean(text)).lower(), minus ftfy (the HF normaliser does NFC).
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip().lower()


def _read_bpe_gz(path: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    # The construction of OpenAI's simple_tokenizer.SimpleTokenizer.
    with gzip.open(path) as file:
        lines = file.read().decode("utf-8").split("\n")[1 : _BPE_GZ_MERGES + 1]
    merges = [_merge(line) for line in lines if line.strip()]
    chars = list(bytes_to_unicode().values())
    vocab_list = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + [SOT, EOT]
    return {token: i for i, token in enumerate(vocab_list)}, merges


def _read_hf_files(folder: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    if not isinstance(vocab, dict):
        raise ValueError("vocab.json is not a JSON object")
    lines = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    return vocab, [_merge(line) for line in lines if line.strip()]


def _merge(line: str) -> tuple[str, str]:
    parts = line.split()
    if len(parts) != 2:
        raise ValueError(f"bad merge line {line!r}")
    return parts[0], parts[1]
