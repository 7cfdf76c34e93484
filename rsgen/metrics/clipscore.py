"""CLIP score: how well images match their captions on an image–text model.

As in the editing paper: ``100 * max(cos(e_image, e_text), 0)`` per image–caption pair,
averaged. With several captions per image (``"captions": [...]`` in a JSONL file, see
:func:`rsgen.data.captions.read_captions`), each image's score is the mean over its captions,
and the result the mean over images (every image weighs the same). Images are streamed by
:func:`rsgen.data.image_batches.iter_image_batches` (strict 8-bit RGB), each resized on its
short side and centre-cropped to the model's ``image_size`` (CLIP's preprocessing,
:func:`rsgen.models.image_text.resize_center_crop`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from rsgen.data.captions import CaptionedImage, read_captions
from rsgen.data.image_batches import (
    DEFAULT_BATCH_SIZE,
    ImageSource,
    image_paths,
    iter_image_batches,
    iter_tensor_batches,
    source_name,
    tensor_transform,
)
from rsgen.errors import RsgenError

DEFAULT_TEXT_BATCH_SIZE = 64

Captions = str | Path | Sequence[str] | Sequence[Sequence[str]]
"""A caption file, or one caption (or list of captions) per image."""


@dataclass(frozen=True)
class CLIPScoreResult:
    """Mean CLIP score ``100 * max(cos, 0)`` of a set, on image–text model ``model``."""

    score: float
    model: str
    n: int
    n_pairs: int
    n_clamped: int
    images: str | None = None
    captions: str | None = None

    @property
    def label(self) -> str:
        """``CLIPScore[<model>]``."""
        return f"CLIPScore[{self.model}]"

    def to_dict(self) -> dict[str, Any]:
        """``{"CLIPScore[<model>]": score, "model", "n" (images), "n_pairs", "n_clamped"
        (pairs with a negative cosine, counted as 0), "images", "captions"}``."""
        return {
            self.label: self.score,
            "model": self.model,
            "n": self.n,
            "n_pairs": self.n_pairs,
            "n_clamped": self.n_clamped,
            "images": self.images,
            "captions": self.captions,
        }


def clip_score(
    images: ImageSource,
    captions: Captions,
    model: Any,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    text_batch_size: int = DEFAULT_TEXT_BATCH_SIZE,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> CLIPScoreResult:
    """CLIP score of images against their captions on an :class:`~rsgen.models.image_text.ImageTextModel`.

    ``images``: a folder (with ``captions`` a caption file, see :func:`read_captions`, or one
    caption or list of captions per image in :func:`image_paths` order), a list of files, or a
    tensor ``(N, 3, H, W)`` in [-1, 1] (with one caption or caption list per image).
    """
    pairs, tensor = _caption_pairs(images, captions)
    model = model.to(device).eval()
    batches = _image_batches(pairs, tensor, model, batch_size, progress)
    total, n_pairs, n_clamped, start = 0.0, 0, 0, 0
    with torch.inference_mode():
        for batch in batches:
            chunk = pairs[start : start + batch.shape[0]]
            start += batch.shape[0]
            scores, clamped = _score_batch(model, batch.to(device), chunk, text_batch_size)
            total += float(scores.sum())
            n_pairs += sum(len(p.captions) for p in chunk)
            n_clamped += clamped
    return CLIPScoreResult(
        score=total / len(pairs),
        model=str(model.name),
        n=len(pairs),
        n_pairs=n_pairs,
        n_clamped=n_clamped,
        images=source_name(images),
        captions=source_name(captions),
    )


def _image_batches(
    pairs: Sequence[CaptionedImage], tensor: torch.Tensor | None, model: Any, batch_size: int, progress: bool
) -> Iterator[torch.Tensor]:
    """The images of ``pairs`` (or ``tensor``) in batches, at the model's input size."""
    size = int(getattr(model, "image_size", 224))

    def resize(x: torch.Tensor) -> torch.Tensor:
        from rsgen.models.image_text import resize_center_crop

        return resize_center_crop(x, size)

    if tensor is not None:
        return iter_tensor_batches(tensor, resize, batch_size)
    return iter_image_batches(
        [p.path for p in pairs],
        tensor_transform(resize),
        batch_size=batch_size,
        progress=progress,
        desc=f"CLIP score ({model.name})",
    )


def _caption_pairs(
    images: ImageSource, captions: Captions
) -> tuple[list[CaptionedImage], torch.Tensor | None]:
    """(image–captions pairs, the image tensor when ``images`` is one)."""
    if isinstance(captions, str | Path):
        if isinstance(images, torch.Tensor) or not Path(images).is_dir():
            raise RsgenError("a caption file needs a folder of images", captions)
        return read_captions(captions, images), None
    lists = [(c,) if isinstance(c, str) else tuple(c) for c in captions]
    if any(not c or any(not isinstance(t, str) or not t.strip() for t in c) for c in lists):
        raise RsgenError("every image needs at least one non-empty caption")
    if isinstance(images, torch.Tensor):
        count, paths = images.shape[0], [Path(f"#{i}") for i in range(images.shape[0])]
    else:
        paths = image_paths(images)
        count = len(paths)
    if count != len(lists):
        raise RsgenError(f"{count} images but {len(lists)} captions")
    pairs = [CaptionedImage(p, c, i) for i, (p, c) in enumerate(zip(paths, lists, strict=True), 1)]
    return pairs, images if isinstance(images, torch.Tensor) else None


def _score_batch(
    model: Any, batch: torch.Tensor, chunk: Sequence[CaptionedImage], text_batch_size: int
) -> tuple[torch.Tensor, int]:
    """Per-image CLIP scores (mean over each image's captions) and the count of clamped pairs."""
    image_emb = model.encode_image(batch, normalize=True)
    texts = list(dict.fromkeys(t for p in chunk for t in p.captions))
    text_emb = torch.cat(
        [
            model.encode_text(texts[i : i + text_batch_size], normalize=True)
            for i in range(0, len(texts), text_batch_size)
        ]
    )
    index = {t: i for i, t in enumerate(texts)}
    owners = torch.tensor([i for i, p in enumerate(chunk) for _ in p.captions], device=image_emb.device)
    columns = torch.tensor([index[t] for p in chunk for t in p.captions], device=image_emb.device)
    cos = F.cosine_similarity(image_emb[owners].float(), text_emb[columns].float(), dim=-1).double()
    pair_scores = 100.0 * cos.clamp(min=0.0)
    per_image = torch.zeros(len(chunk), dtype=torch.float64, device=cos.device)
    per_image.index_add_(0, owners, pair_scores)
    counts = torch.tensor([len(p.captions) for p in chunk], dtype=torch.float64, device=cos.device)
    return per_image / counts, int((cos < 0).sum())
