"""Image–text retrieval Recall@K and zero-shot scene classification of an image–text model.

Protocol (``rsgen eval retrieval``): every image of the split is a gallery item for
text→image; every *distinct* caption of an image (RSICD repeats captions to pad to five; case
and spacing folded) is a query, correct when its own image ranks in the top K. For
image→text every image is a query, correct when any of its captions ranks in the top K among
all captions of the split. Zero-shot: each image is assigned the scene whose prompt
(``an aerial image of a {scene}``) is most similar; accuracy over all images of the split,
the classes being the scenes present in the caption file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rsgen.data.captions import (
    ZERO_SHOT_TEMPLATE,
    caption_queries,
    read_caption_records,
    scene_labels,
    zero_shot_prompt,
)
from rsgen.data.image_batches import center_square_transform, iter_image_batches
from rsgen.errors import RsgenError
from rsgen.io import read_rgb_uint8
from rsgen.models.image_text import ImageTextModel
from rsgen.progress import progress_bar

RECALL_KS = (1, 5, 10)


@dataclass
class RetrievalResult:
    """Recall@K in both directions and zero-shot accuracy (fractions in [0, 1])."""

    model: str
    split: str
    t2i_r1: float
    t2i_r5: float
    t2i_r10: float
    i2t_r1: float
    i2t_r5: float
    i2t_r10: float
    mean_recall: float
    zeroshot_acc: float
    n_images: int
    n_captions: int
    n_scenes: int
    zeroshot_template: str = ZERO_SHOT_TEMPLATE

    def to_dict(self) -> dict:
        return asdict(self)


def recall_at_k(
    text_emb: torch.Tensor,
    image_emb: torch.Tensor,
    caption_image: torch.Tensor,
    ks: Sequence[int] = RECALL_KS,
) -> dict[str, float]:
    """Recall@K both ways from normalised embeddings; ``caption_image[j]`` is caption j's image."""
    similarity = text_emb @ image_emb.T  # (captions, images)
    own = similarity.gather(1, caption_image[:, None])
    # Rank of the own image = number of images scoring strictly higher.
    t2i_rank = (similarity > own).sum(dim=1)
    # For an image, the best rank of any of its captions among all captions.
    by_image = similarity.T  # (images, captions)
    i2t_rank = torch.full((image_emb.shape[0],), similarity.shape[0], dtype=torch.long)
    for caption, image in enumerate(caption_image.tolist()):
        rank = (by_image[image] > by_image[image, caption]).sum()
        i2t_rank[image] = torch.minimum(i2t_rank[image], rank)
    scores = {}
    for k in ks:
        scores[f"t2i_r{k}"] = float((t2i_rank < k).float().mean())
        scores[f"i2t_r{k}"] = float((i2t_rank < k).float().mean())
    return scores


def zero_shot_accuracy(image_emb: torch.Tensor, class_emb: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of images whose most similar class embedding is their label."""
    return float(((image_emb @ class_emb.T).argmax(dim=1) == labels).float().mean())


def retrieval_scores(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    caption_image: torch.Tensor,
    class_emb: torch.Tensor,
    labels: torch.Tensor,
) -> dict[str, float]:
    """All retrieval numbers from embeddings, plus their mean recall."""
    scores = recall_at_k(text_emb, image_emb, caption_image)
    scores["mean_recall"] = sum(scores.values()) / len(scores)
    scores["zeroshot_acc"] = zero_shot_accuracy(image_emb, class_emb, labels)
    return scores


def _center_square_batches(
    paths: Sequence[Path], size: int, batch_size: int, progress: bool
) -> Iterator[torch.Tensor]:
    """Image files as ``(B, 3, size, size)`` tensors in [-1, 1], ``batch_size`` at a time: any
    8-bit image read as RGB (:func:`rsgen.io.read_rgb_uint8`), its short side resized to
    ``size`` and the centre cropped (bicubic, the preprocessing the image–text models use)."""
    transform = center_square_transform(size)
    return iter_image_batches(paths, transform, batch_size=batch_size, progress=progress, read=read_rgb_uint8)


@torch.no_grad()
def embed_images(
    model: ImageTextModel, paths: Sequence[Path], batch_size: int = 32, progress: bool = True
) -> torch.Tensor:
    """Normalised embeddings of image files, read and encoded in batches."""
    batches = _center_square_batches(paths, model.image_size, batch_size, progress)
    return torch.cat([model.encode_image(batch.to(model.device)).float().cpu() for batch in batches])


@torch.no_grad()
def embed_texts(
    model: ImageTextModel, texts: Sequence[str], batch_size: int = 128, progress: bool = True
) -> torch.Tensor:
    """Normalised embeddings of texts, in batches."""
    chunks = []
    starts = range(0, len(texts), batch_size)
    for start in progress_bar(starts, desc="texts", enabled=progress):
        chunks.append(model.encode_text(list(texts[start : start + batch_size])).float().cpu())
    return torch.cat(chunks)


def evaluate_retrieval(
    model: ImageTextModel,
    data_dir: str | Path,
    split: str = "test",
    batch_size: int = 32,
    progress: bool = True,
) -> RetrievalResult:
    """Recall@1/5/10 both ways and zero-shot scene accuracy on ``data_dir/captions.jsonl``."""
    records = read_caption_records(data_dir, split)
    image_emb = embed_images(model, [r.path for r in records], batch_size, progress)
    texts, owners = caption_queries(records)
    text_emb = embed_texts(model, texts, progress=progress)
    scenes, labels = scene_labels(records)
    class_emb = embed_texts(model, [zero_shot_prompt(s) for s in scenes], progress=False)
    scores = retrieval_scores(image_emb, text_emb, owners, class_emb, labels)
    return RetrievalResult(
        model=model.name,
        split=split,
        n_images=len(records),
        n_captions=len(texts),
        n_scenes=len(scenes),
        **scores,
    )


@torch.no_grad()
def evaluate_scene_classifier(
    classifier: torch.nn.Module,
    data_dir: str | Path,
    split: str = "test",
    batch_size: int = 32,
    progress: bool = True,
) -> dict:
    """Accuracy (overall and per scene) of a classifier with ``.classes`` on a caption file's scenes."""
    records = read_caption_records(data_dir, split)
    classes = list(classifier.classes)
    unknown = sorted({r.scene for r in records} - set(classes))
    if unknown:
        raise RsgenError(f"scenes the classifier does not know: {', '.join(unknown)}", data_dir)
    device = next(classifier.parameters()).device
    predictions = []
    paths = [r.path for r in records]
    for images in _center_square_batches(paths, classifier.image_size, batch_size, progress):
        predictions += classifier(images.to(device)).argmax(dim=1).tolist()
    correct: dict[str, list[bool]] = {}
    for record, predicted in zip(records, predictions, strict=True):
        correct.setdefault(record.scene, []).append(classes[predicted] == record.scene)
    hits = [hit for scene_hits in correct.values() for hit in scene_hits]
    return {
        "model": getattr(classifier, "name", type(classifier).__name__),
        "split": split,
        "accuracy": sum(hits) / len(hits),
        "n_images": len(hits),
        "per_scene": {scene: sum(h) / len(h) for scene, h in sorted(correct.items())},
    }
