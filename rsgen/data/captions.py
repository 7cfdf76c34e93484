"""Caption files: image–caption datasets, and the caption files users score images against.

Datasets (:func:`read_caption_records`) are in the ``captions.jsonl`` layout of
``rsicd_aid150``: one JSON object per line, ``{"file", "scene", "split", "captions": [...]}``
with the images in ``images/`` beside the file. RSICD pads every image to five captions by
repeating some: :func:`unique_captions` de-duplicates them (case and spacing folded) wherever
counting them twice would bias a number (retrieval queries, training targets).

Caption files for CLIP score (:func:`read_captions`) pair a folder of images with captions:
``.jsonl`` with ``"file"`` and ``"caption"``, ``"prompt"`` or ``"captions"``, or ``.txt`` with
one caption per line for the sorted images. A dataset ``captions.jsonl`` is also one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rsgen.data.image_batches import image_paths
from rsgen.errors import RsgenError

CAPTIONS_FILE = "captions.jsonl"
IMAGES_DIR = "images"
CAPTION_KEYS = ("caption", "prompt", "captions")
FILE_KEYS = ("file", "image")

# RSICD writes AID scene names as one word; prompts need the words.
SCENE_WORDS = {
    "bareland": "bare land",
    "baseballfield": "baseball field",
    "denseresidential": "dense residential area",
    "mediumresidential": "medium residential area",
    "sparseresidential": "sparse residential area",
    "railwaystation": "railway station",
    "storagetanks": "storage tanks",
    "center": "city center",
    "commercial": "commercial area",
    "industrial": "industrial area",
    "parking": "parking lot",
}
ZERO_SHOT_TEMPLATE = "an aerial image of a {scene}"


@dataclass(frozen=True)
class CaptionRecord:
    """One image with its captions and scene label."""

    path: Path
    scene: str
    split: str
    captions: tuple[str, ...]


def scene_phrase(scene: str) -> str:
    """``denseresidential`` → ``dense residential area``."""
    return SCENE_WORDS.get(scene, scene)


def zero_shot_prompt(scene: str, template: str = ZERO_SHOT_TEMPLATE) -> str:
    """The zero-shot classification prompt of a scene."""
    return template.format(scene=scene_phrase(scene))


def normalize_caption(text: str) -> str:
    """Lower-case, single-spaced, no space before punctuation, no final full stop: the key for
    de-duplication."""
    text = re.sub(r"\s+", " ", text.strip().lower())
    return re.sub(r"\s+([.,!?;:])", r"\1", text).rstrip(" .")


def unique_captions(captions: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Captions with repeats (up to case and spacing) removed, first occurrence kept."""
    seen: dict[str, str] = {}
    for caption in captions:
        seen.setdefault(normalize_caption(caption), caption.strip())
    return tuple(seen.values())


def read_caption_records(data_dir: str | Path, split: str | None = None) -> list[CaptionRecord]:
    """Records of ``data_dir/captions.jsonl`` (all, or one ``split``), in file order."""
    data_dir = Path(data_dir)
    path = data_dir / CAPTIONS_FILE
    if not path.is_file():
        raise RsgenError(f"no {CAPTIONS_FILE} in this folder (expected the rsicd_aid150 layout)", data_dir)
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            record = _parse_record(line, data_dir, path, number)
            if split is None or record.split == split:
                records.append(record)
    if not records:
        raise RsgenError(f"no records with split {split!r}" if split else "no records", path)
    return records


def parse_jsonl_object(line: str, number: int, path: Path) -> dict:
    """One line of a JSONL file as a dict; anything else is a one-line error with the line number."""
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RsgenError(f"line {number}: not valid JSON ({exc.msg}, column {exc.colno})", path) from exc
    if not isinstance(item, dict):
        raise RsgenError(f"line {number}: expected a JSON object, got {type(item).__name__}", path)
    return item


def _parse_record(line: str, data_dir: Path, path: Path, number: int) -> CaptionRecord:
    item = parse_jsonl_object(line, number, path)
    captions = item.get("captions")
    if not isinstance(item.get("file"), str) or not isinstance(captions, list) or not captions:
        raise RsgenError(f"line {number}: needs 'file' and a non-empty 'captions' list", path)
    if not all(isinstance(c, str) and c.strip() for c in captions):
        raise RsgenError(f"line {number}: captions must be non-empty strings", path)
    image = data_dir / IMAGES_DIR / item["file"]
    if not image.is_file():
        image = data_dir / item["file"]
    if not image.is_file():
        raise RsgenError(f"line {number}: image {item['file']!r} not found", path)
    return CaptionRecord(
        path=image,
        scene=str(item.get("scene", "")),
        split=str(item.get("split", "")),
        captions=tuple(captions),
    )


def holdout_split(
    records: list[CaptionRecord], fraction: float, seed: int = 0
) -> tuple[list[CaptionRecord], list[CaptionRecord]]:
    """Split records into (train, val) with ``fraction`` of every scene held out, reproducibly."""
    import numpy as np

    rng = np.random.default_rng(seed)
    by_scene: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        by_scene.setdefault(record.scene, []).append(index)
    held: set[int] = set()
    for scene in sorted(by_scene):
        indices = by_scene[scene]
        count = int(round(len(indices) * fraction))
        held.update(rng.choice(indices, size=count, replace=False).tolist())
    train = [r for i, r in enumerate(records) if i not in held]
    val = [r for i, r in enumerate(records) if i in held]
    return train, val


def caption_queries(records: Sequence[CaptionRecord]) -> tuple[list[str], torch.Tensor]:
    """Distinct captions of every record and the index of the record each belongs to."""
    texts, owners = [], []
    for index, record in enumerate(records):
        for caption in unique_captions(record.captions):
            texts.append(caption)
            owners.append(index)
    return texts, torch.tensor(owners)


def scene_labels(records: Sequence[CaptionRecord]) -> tuple[list[str], torch.Tensor]:
    """Sorted scene names and each record's label index."""
    scenes = sorted({r.scene for r in records})
    index = {s: i for i, s in enumerate(scenes)}
    return scenes, torch.tensor([index[r.scene] for r in records])


# --------------------------------------------------------------------------- caption files for CLIP score


@dataclass(frozen=True)
class CaptionedImage:
    """One image and the caption(s) it is scored against; ``line`` is 1-based in the caption file."""

    path: Path
    captions: tuple[str, ...]
    line: int = 0


def read_captions(captions_file: str | Path, image_dir: str | Path) -> list[CaptionedImage]:
    """Pair images with captions from a ``.jsonl`` or ``.txt`` file.

    ``.jsonl``: one object per line, ``"file"`` (or ``"image"``) relative to ``image_dir`` and
    the first present of ``"caption"`` (string), ``"prompt"`` (string) or ``"captions"`` (list of
    strings, the image is scored against each); blank lines are skipped, images of the folder
    that no line names are not scored. ``.txt``: one caption per line, matched in order to the
    images of ``image_dir`` as :func:`rsgen.io.list_images` sorts them (trailing blank lines
    ignored); the counts must match.

    Raises :class:`RsgenError` for a missing/empty/undecodable file, a broken JSON line (with
    its number), an entry without file or caption, an empty caption, a named image that does
    not exist, or an image/caption count mismatch.
    """
    path = Path(captions_file)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".txt"):
        raise RsgenError(
            "caption file must be .jsonl (one JSON object per line) or .txt (one per line)", path
        )
    lines = _read_lines(path)
    folder = Path(image_dir)
    if not folder.is_dir():
        raise RsgenError("image folder not found", folder)
    entries = (
        _jsonl_captions(lines, path, folder) if suffix == ".jsonl" else _txt_captions(lines, path, folder)
    )
    if not entries:
        raise RsgenError("caption file has no captions", path)
    return entries


def _read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 caption file; RsgenError if it is missing or unreadable."""
    if not path.is_file():
        raise RsgenError("caption file not found", path)
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise RsgenError(f"caption file is not UTF-8 text (byte {exc.start})", path) from exc
    except OSError as exc:
        raise RsgenError(f"cannot read caption file: {exc.strerror or exc}", path) from exc


def _jsonl_captions(lines: list[str], path: Path, folder: Path) -> list[CaptionedImage]:
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        entries.append(_jsonl_entry(parse_jsonl_object(line, number, path), number, path, folder))
    return entries


def _jsonl_entry(record: dict[str, Any], number: int, path: Path, folder: Path) -> CaptionedImage:
    name = next((record[k] for k in FILE_KEYS if k in record), None)
    if not isinstance(name, str) or not name.strip():
        raise RsgenError(f'line {number}: no image file name (a "file" string)', path)
    key = next((k for k in CAPTION_KEYS if k in record), None)
    if key is None:
        raise RsgenError(f'line {number}: no "caption", "prompt" or "captions"', path)
    value = record[key]
    captions = value if key == "captions" else [value]
    if not isinstance(captions, list) or not captions:
        raise RsgenError(f'line {number}: "captions" must be a non-empty list of strings', path)
    for caption in captions:
        if not isinstance(caption, str):
            raise RsgenError(f"line {number}: caption is {type(caption).__name__}, not a string", path)
        if not caption.strip():
            raise RsgenError(f"line {number}: empty caption", path)
    image = folder / name
    if Path(name).is_absolute() or not image.resolve().is_relative_to(folder.resolve()):
        raise RsgenError(f"line {number}: image {name!r} is outside the image folder {folder}", path)
    if not image.is_file():
        raise RsgenError(f"line {number}: image {name!r} not found in {folder}", path)
    return CaptionedImage(image, tuple(captions), number)


def _txt_captions(lines: list[str], path: Path, folder: Path) -> list[CaptionedImage]:
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise RsgenError(f"line {number}: empty caption", path)
    images = image_paths(folder)
    if len(images) != len(lines):
        raise RsgenError(f"{len(images)} images in {folder} but {len(lines)} captions", path)
    return [CaptionedImage(p, (c.strip(),), n) for n, (p, c) in enumerate(zip(images, lines, strict=True), 1)]
