"""The token-denoising transformer of text-to-image (RSVQ-Diffusion, after VQ-Diffusion).

Input: a grid of image-token ids ``(B, h, w)`` in ``0..K`` (``K`` = ``num_classes`` is the
[MASK] token of the mask-and-replace diffusion), the timestep ``t`` and the frozen MiniLM token
states of the caption ``(B, L, text_dim)`` with their padding mask. Output: logits
``(B, K, h, w)`` of ``p(x0 | x_t)`` over the ``K`` real codes.

Layout (VQ-Diffusion's ``Text2ImageTransformer``): token embedding + learned row and column
embeddings, ``depth`` pre-norm blocks of self-attention → cross-attention to the text → MLP, the
two attention sub-layers normalised by an adaptive LayerNorm whose scale and shift come from a
sinusoidal timestep embedding ("AdaLayerNorm"), then LayerNorm + a linear head.

The two RSVQ-Diffusion changes are config switches (``ABLATIONS``: ``baseline``, ``sp``,
``lma``, ``rsvq``):

* **SP** (``spatial_position``): a 2-D rotary position embedding applied to the queries and keys
  of every self-attention layer — in each head, the first half of the dimensions rotates with the
  token's row index, the second half with its column index (:func:`rope_2d`) — so attention
  scores depend on the relative 2-D offset between tokens. It comes on top of the learned
  row/column embeddings that the baseline already adds to the input.
* **LMA** (``local_attention``, the paper's TransLocalBlock): self-attention restricted to
  non-overlapping ``window`` x ``window`` squares of the token grid (the grid is reshaped to
  ``(B * windows, window², width)`` and all heads attend within each window in parallel); with
  ``shift_windows`` every other block rolls the grid by ``window // 2`` first (Swin), so windows
  exchange information across blocks. Tokens that the roll wraps around from the opposite border
  share a window but are masked from each other (Swin's mask): no attention across the image
  border. Cross-attention to the text stays global.

All attention runs through ``torch.nn.functional.scaled_dot_product_attention``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rsgen.config import ComponentConfig
from rsgen.models.blocks import sinusoidal_embedding
from rsgen.models.pretrained import PretrainedModel

#: The paper's ablations (Table 3) as config switches over the same network.
ABLATIONS: dict[str, dict[str, bool]] = {
    "baseline": {"spatial_position": False, "local_attention": False},
    "sp": {"spatial_position": True, "local_attention": False},
    "lma": {"spatial_position": False, "local_attention": True},
    "rsvq": {"spatial_position": True, "local_attention": True},
}


@dataclass
class DiffusionTransformerConfig(ComponentConfig):
    """Sizes and switches of the denoising transformer. Defaults: the full RSVQ model at the
    CPU size (16 x 16 tokens of a 1024-code tokenizer, 8 blocks of width 256)."""

    NAME: ClassVar[str] = "rsvq_transformer"

    num_classes: int = 1024
    grid: list[int] = field(default_factory=lambda: [16, 16])
    width: int = 256
    depth: int = 8
    heads: int = 8
    mlp_ratio: float = 4.0
    text_dim: int = 384
    max_text_tokens: int = 77
    num_timesteps: int = 100
    dropout: float = 0.0
    spatial_position: bool = True
    local_attention: bool = True
    window: int = 8
    shift_windows: bool = True
    rope_base: float = 100.0

    def __post_init__(self) -> None:
        self.grid = [int(g) for g in self.grid]
        if len(self.grid) != 2 or min(self.grid) < 1:
            raise ValueError(f"grid must be two positive sides [h, w], got {self.grid}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        positive = ("width", "depth", "heads", "text_dim", "max_text_tokens", "num_timesteps", "window")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.mlp_ratio <= 0 or self.rope_base <= 1:
            raise ValueError("mlp_ratio must be > 0 and rope_base > 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.width % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide width ({self.width})")
        if self.spatial_position and self.head_dim % 4:
            raise ValueError(
                f"2-D rotary positions (spatial_position) need a head dim divisible by 4, got {self.head_dim}"
            )
        if self.local_attention and any(side % self.window for side in self.grid):
            raise ValueError(f"window ({self.window}) must divide both grid sides {self.grid}")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @classmethod
    def ablation(cls, name: str, **overrides: Any) -> DiffusionTransformerConfig:
        """The config of one of the paper's ablations (``baseline``, ``sp``, ``lma``, ``rsvq``)."""
        if name not in ABLATIONS:
            raise ValueError(f"unknown ablation {name!r}; known: {', '.join(ABLATIONS)}")
        return cls(**{**ABLATIONS[name], **overrides})


def rope_2d(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, base: float = 100.0) -> torch.Tensor:
    """2-D rotary position embedding of ``x`` ``(..., N, d)`` (``d`` divisible by 4) for tokens at
    ``(rows[n], cols[n])``: the first ``d / 2`` dims rotate with the row, the rest with the column
    (each half as in RoFormer, rotate-half pairing, frequencies ``base ** (-2i / (d / 2))``).
    ``rope(q, p) · rope(k, p')`` depends on ``p' - p`` only."""
    return apply_rope(x, *rope_2d_tables(rows, cols, x.shape[-1], base, x.dtype))


def rope_2d_tables(
    rows: torch.Tensor, cols: torch.Tensor, d: int, base: float = 100.0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(N, d)`` cosine and signed sine tables of :func:`rope_2d`, computed once per forward
    pass and shared by every layer (see :func:`apply_rope`)."""
    if d % 4:
        raise ValueError(f"2-D RoPE needs a last dim divisible by 4, got {d}")
    m = d // 4
    freqs = base ** (-torch.arange(m, device=rows.device, dtype=torch.float32) / m)
    by_row, by_col = rows.float()[:, None] * freqs, cols.float()[:, None] * freqs  # (N, m)
    cos = torch.cat([by_row.cos(), by_row.cos(), by_col.cos(), by_col.cos()], dim=-1)
    sin = torch.cat([-by_row.sin(), by_row.sin(), -by_col.sin(), by_col.sin()], dim=-1)
    return cos.to(dtype), sin.to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``(..., N, d)`` by the tables of :func:`rope_2d_tables`: in each half
    ``(x1, x2)`` of the row and column parts, ``(x1 cos - x2 sin, x2 cos + x1 sin)``."""
    swapped = x.unflatten(-1, (2, 2, x.shape[-1] // 4)).flip(-2).flatten(-3)
    return x * cos + swapped * sin


def timestep_embedding(
    t: torch.Tensor, dim: int, num_timesteps: int, rescale: float = 4000.0
) -> torch.Tensor:
    """VQ-Diffusion's sinusoidal embedding of ``t`` (``(B,)``) with steps rescaled to ``0..4000``."""
    return sinusoidal_embedding(t.float() / num_timesteps * rescale, dim)


class AdaLayerNorm(nn.Module):
    """LayerNorm without affine whose scale and shift come from the timestep embedding."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.modulation(t_emb)[:, None].chunk(2, dim=-1)
        return self.norm(x) * (1 + scale) + shift


class SelfAttention(nn.Module):
    """Multi-head self-attention over the token grid: full, or within (shifted) windows; with
    2-D RoPE on q/k when ``rope`` is on."""

    def __init__(self, config: DiffusionTransformerConfig, shift: int) -> None:
        super().__init__()
        self.heads, self.dropout = config.heads, config.dropout
        self.rope, self.rope_base = config.spatial_position, config.rope_base
        self.window = config.window if config.local_attention else 0
        self.shift = shift
        self.qkv = nn.Linear(config.width, 3 * config.width)
        self.out = nn.Linear(config.width, config.width)

    def forward(
        self, x: torch.Tensor, h: int, w: int, rope: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """``rope``: the :func:`rope_2d_tables` of the grid (true positions, before any roll:
        rolled tokens keep theirs); required when the block uses 2-D RoPE."""
        b, n, c = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.rope:
            if rope is None:
                raise ValueError("this self-attention uses 2-D RoPE: pass the grid's rope tables")
            cos, sin = (table.to(qkv.dtype) for table in rope)
            q, k = apply_rope(qkv[:2], cos, sin)  # q and k in one pass
            v = qkv[2]
        else:
            q, k, v = qkv
        p = self.dropout if self.training else 0.0
        if not self.window:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
            return self.out(y.transpose(1, 2).reshape(b, n, c))
        ws, s = self.window, self.shift
        q, k, v = (_to_windows(z, h, w, ws, s) for z in (q, k, v))  # (B * windows, heads, ws², d)
        mask = _shift_mask(h, w, ws, s, x.device).repeat(b, 1, 1, 1) if s else None
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(_from_windows(y, b, h, w, ws, s))


def _to_windows(z: torch.Tensor, h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """``(B, heads, h * w, d)`` → ``(B * windows, heads, ws², d)``, after rolling by ``-shift``."""
    b, heads, _, d = z.shape
    z = z.view(b, heads, h, w, d)
    if shift:
        z = torch.roll(z, shifts=(-shift, -shift), dims=(2, 3))
    z = z.view(b, heads, h // ws, ws, w // ws, ws, d).permute(0, 2, 4, 1, 3, 5, 6)
    return z.reshape(-1, heads, ws * ws, d)


def _from_windows(y: torch.Tensor, b: int, h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """Inverse of :func:`_to_windows` with heads merged: → ``(B, h * w, heads * d)``."""
    heads, d = y.shape[1], y.shape[-1]
    y = y.view(b, h // ws, w // ws, heads, ws, ws, d).permute(0, 1, 4, 2, 5, 3, 6).reshape(b, h, w, heads * d)
    if shift:
        y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
    return y.reshape(b, h * w, heads * d)


def _shift_mask(h: int, w: int, ws: int, shift: int, device: torch.device) -> torch.Tensor:
    """``(windows, 1, ws², ws²)`` bool, True = may attend: in the rolled grid, tokens attend only to
    tokens from the same side of the wrap (Swin's mask), so nothing attends across the border."""
    labels = torch.zeros(h, w, dtype=torch.long)
    region = 0
    for hs in (slice(0, h - ws), slice(h - ws, h - shift), slice(h - shift, h)):
        for wsl in (slice(0, w - ws), slice(w - ws, w - shift), slice(w - shift, w)):
            labels[hs, wsl] = region
            region += 1
    labels = labels.view(h // ws, ws, w // ws, ws).permute(0, 2, 1, 3).reshape(-1, ws * ws)
    return (labels[:, :, None] == labels[:, None, :])[:, None].to(device)


class CrossAttention(nn.Module):
    """Multi-head attention from the image tokens to all (unpadded) text tokens."""

    def __init__(self, config: DiffusionTransformerConfig) -> None:
        super().__init__()
        self.heads, self.dropout = config.heads, config.dropout
        self.q = nn.Linear(config.width, config.width)
        self.kv = nn.Linear(config.text_dim, 2 * config.width)
        self.out = nn.Linear(config.width, config.width)

    def forward(self, x: torch.Tensor, text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        hd = c // self.heads
        q = self.q(x).view(b, n, self.heads, hd).transpose(1, 2)
        k, v = self.kv(text).view(b, text.shape[1], 2, self.heads, hd).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :], dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(b, n, c))


class TransformerBlock(nn.Module):
    """Pre-norm: x + SelfAttn(AdaLN(x, t)); x + CrossAttn(AdaLN(x, t), text); x + MLP(LN(x))."""

    def __init__(self, config: DiffusionTransformerConfig, shift: int) -> None:
        super().__init__()
        hidden = int(round(config.width * config.mlp_ratio))
        self.norm1, self.norm2 = AdaLayerNorm(config.width), AdaLayerNorm(config.width)
        self.norm3 = nn.LayerNorm(config.width)
        self.self_attention = SelfAttention(config, shift)
        self.cross_attention = CrossAttention(config)
        self.mlp = nn.Sequential(
            nn.Linear(config.width, hidden),
            nn.GELU(),
            nn.Linear(hidden, config.width),
            nn.Dropout(config.dropout),
        )
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        t_emb: torch.Tensor,
        text: torch.Tensor,
        mask: torch.Tensor,
        h: int,
        w: int,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        x = x + self.drop(self.self_attention(self.norm1(x, t_emb), h, w, rope))
        x = x + self.drop(self.cross_attention(self.norm2(x, t_emb), text, mask))
        return x + self.mlp(self.norm3(x))


class DiffusionTransformer(PretrainedModel):
    """``forward(ids (B, h, w), t (B,), text (B, L, text_dim), text_mask (B, L) | None)`` →
    logits ``(B, K, h, w)`` of ``p(x0 | x_t)`` over the ``K`` real codes."""

    config_class = DiffusionTransformerConfig

    def __init__(self, config: DiffusionTransformerConfig) -> None:
        super().__init__()
        self.config = config
        c, (h, w) = config.width, config.grid
        self.token_embedding = nn.Embedding(config.num_classes + 1, c)  # index K = [MASK]
        self.row_embedding = nn.Parameter(torch.zeros(h, 1, c))
        self.col_embedding = nn.Parameter(torch.zeros(1, w, c))
        self.time_embedding = nn.Sequential(nn.Linear(c, c), nn.SiLU(), nn.Linear(c, c))
        self.null_text = nn.Parameter(torch.zeros(1, 1, config.text_dim))
        shift = config.window // 2 if config.local_attention and config.shift_windows else 0
        self.blocks = nn.ModuleList(
            TransformerBlock(config, shift if i % 2 else 0) for i in range(config.depth)
        )
        self.final_norm = nn.LayerNorm(c)
        self.head = nn.Linear(c, config.num_classes)
        self.apply(_init_weights)
        for p in (self.row_embedding, self.col_embedding, self.null_text):
            nn.init.normal_(p, std=0.02)

    @property
    def mask_id(self) -> int:
        return self.config.num_classes

    def forward(
        self,
        ids: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        cfg = self.config
        b, h, w = self._check_inputs(ids, t, text, text_mask)
        if text_mask is None:
            text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
        x = self.token_embedding(ids) + self.row_embedding + self.col_embedding  # (B, h, w, c)
        x = x.reshape(b, h * w, cfg.width)
        t_emb = self.time_embedding(timestep_embedding(t, cfg.width, cfg.num_timesteps).to(x.dtype))
        text = text.to(x.dtype)
        rope = None
        if cfg.spatial_position:
            rows = torch.arange(h, device=x.device).repeat_interleave(w)
            cols = torch.arange(w, device=x.device).repeat(h)
            rope = rope_2d_tables(rows, cols, cfg.head_dim, cfg.rope_base, x.dtype)
        for block in self.blocks:
            x = block(x, t_emb, text, text_mask, h, w, rope)
        logits = self.head(self.final_norm(x))  # (B, N, K)
        return logits.transpose(1, 2).reshape(b, cfg.num_classes, h, w)

    def null_text_states(self, batch_size: int, length: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """The unconditional context of classifier-free guidance: ``(B, length, text_dim)`` states
        whose first token is the learned ``null_text`` (the rest padding) and its mask."""
        if batch_size < 1 or length < 1:
            raise ValueError("batch_size and length must be >= 1")
        states = self.null_text.expand(batch_size, 1, -1)
        if length > 1:
            states = torch.cat([states, states.new_zeros(batch_size, length - 1, states.shape[-1])], dim=1)
        mask = torch.zeros(batch_size, length, dtype=torch.bool, device=states.device)
        mask[:, 0] = True
        return states, mask

    def drop_text(
        self,
        text: torch.Tensor,
        text_mask: torch.Tensor | None,
        drop_prob: float,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training-time condition dropout: each sample's context is replaced, with probability
        ``drop_prob``, by the null context (same length; gradients reach ``null_text``)."""
        if not 0.0 <= drop_prob <= 1.0:
            raise ValueError(f"drop_prob must be in [0, 1], got {drop_prob}")
        b, length = text.shape[:2]
        if text_mask is None:
            text_mask = torch.ones(b, length, dtype=torch.bool, device=text.device)
        draw = torch.rand(b, generator=generator, device=generator.device if generator else "cpu")
        drop = (draw < drop_prob).to(text.device)
        null, null_mask = self.null_text_states(b, length)
        return (
            torch.where(drop[:, None, None], null.to(text.dtype), text),
            torch.where(drop[:, None], null_mask, text_mask.bool()),
        )

    def _check_inputs(
        self, ids: torch.Tensor, t: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None
    ) -> tuple[int, int, int]:
        cfg = self.config
        if ids.ndim != 3 or list(ids.shape[1:]) != cfg.grid or ids.dtype != torch.long:
            raise ValueError(
                f"ids must be a (B, {cfg.grid[0]}, {cfg.grid[1]}) LongTensor, got "
                f"{tuple(ids.shape)} {ids.dtype}"
            )
        b = ids.shape[0]
        if int(ids.min()) < 0 or int(ids.max()) > cfg.num_classes:
            raise ValueError(f"token ids must be in 0..{cfg.num_classes} ({cfg.num_classes} = [MASK])")
        if t.shape != (b,) or t.is_floating_point():
            raise ValueError(f"t must be an integer tensor of shape ({b},), got {tuple(t.shape)} {t.dtype}")
        if int(t.min()) < 0 or int(t.max()) >= cfg.num_timesteps:
            raise ValueError(f"timesteps must be in 0..{cfg.num_timesteps - 1}")
        if text.ndim != 3 or text.shape[0] != b or text.shape[2] != cfg.text_dim:
            raise ValueError(f"text must be (B={b}, L, {cfg.text_dim}), got {tuple(text.shape)}")
        if not 1 <= text.shape[1] <= cfg.max_text_tokens:
            raise ValueError(f"text length must be 1..{cfg.max_text_tokens}, got {text.shape[1]}")
        if text_mask is not None:
            if text_mask.shape != text.shape[:2] or text_mask.dtype != torch.bool:
                raise ValueError(f"text_mask must be a bool tensor of shape {tuple(text.shape[:2])}")
            if not bool(text_mask.any(dim=1).all()):
                raise ValueError("every sample needs at least one real text token (use null_text_states)")
        return b, cfg.grid[0], cfg.grid[1]


def _init_weights(module: nn.Module) -> None:
    """VQ-Diffusion's init: N(0, 0.02) linear and embedding weights, zero biases."""
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
