"""CLIP's byte-level BPE tokenizer, read from local files (nothing is downloaded): open_clip's
``bpe_simple_vocab_16e6.txt.gz`` or a Hugging Face ``vocab.json`` + ``merges.txt``."""

from __future__ import annotations

import gzip
import html
import json
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from rsgen.errors import RsgenError

BPE_GZ_NAME = "bpe_simple_vocab_16e6.txt.gz"
HF_TOKENIZER_FILES = ("vocab.json", "merges.txt")
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
# OpenAI's simple_tokenizer keeps merges 1 .. 49152-256-2 of its .gz (line 0 is a header).
_BPE_GZ_MERGES = 49152 - 256 - 2


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
