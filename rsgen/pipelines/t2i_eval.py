"""Evaluation of text-to-image models on the test captions (``rsgen eval t2i``, issue 12's Table 3).

**Cases.** A fixed subset of the ``test`` split of a captions.jsonl dataset (``rsicd_aid150``):
``images`` records drawn without replacement by a generator seeded with ``subset_seed`` (0), in
file order; all of them when ``images`` is None or at least the split's size. Each case is the
image's **first distinct caption** (:func:`~rsgen.data.captions.unique_captions`) and its scene.

**Generated rows.** Every model generates one image per case for every sampling seed, the
prompts batched ``batch`` at a time (:meth:`TextToImage.generate_batch`; batch ``b`` is seeded
with ``SeedSequence([seed, b])``, so the images depend on the seed and the batch size). Each
(model, seed) set is scored; a model's row is the mean and the sample standard deviation
(ddof 1) over its seeds.

**Real row.** The cases' own test images, centre squares resized to the model's image size
(128 px; bicubic), scored exactly like generated images: every image, real or generated,
reaches the networks at that size and is resized by each network's own preprocessing.

**Columns** (rs-scene and efficientnet-lite0 are :mod:`rsgen.metrics.features` extractors):

* ``FD[rs-scene]``, ``FD[efficientnet-lite0]``: Fréchet distance to the cases' real test images.
  The real row cannot be compared with itself (FD would be 0), so its reference is **a held-out
  part of train**: the ``holdout_fraction`` (0.1) of every scene that the ``rsvq`` task holds out
  for validation (:func:`~rsgen.data.captions.holdout_split`, same seed 0), never trained on;
  ``min(images, held-out)`` of them, seeded. This is the FD between two independent real samples,
  the floor a perfect model would reach; splitting the test images instead would halve both sets
  and FD grows as sets shrink, so the floor would not be comparable with the generated rows.
* ``IS[rs-scene]``: Inception score on rs-scene's 30 scene logits (10 splits, at most n / 2).
* ``CLIPScore[rs-clip]``: ``100 * max(cos, 0)`` of each image with its case's caption.
* ``scene_accuracy``: share of images that the shipped rs-scene classifier assigns to the
  case's scene (the arg-max of the same logits).
* **Tokenizer round trip** (``round_trip`` of each model row): the cases' real test images
  encoded to tokens and decoded by the model's own tokenizer, scored like generated images. No
  transformer can make images better than what its tokenizer decodes, so this row is the
  model's ceiling: a model whose round trip is unrecognisable needs a better tokenizer first.
* **Memorisation**: each image's nearest *training* image (train minus the held-out part: what
  the model was trained on) by **cosine distance** ``1 - cos`` of the rs-scene features.
  ``nn_distance_median`` is the median of these distances; ``closer_than_real_p5`` the share
  of images closer to a training image than the 5th percentile of the real test images' own
  distances (``real_p5``). A model that copies its training set has a small median and a large
  share; real images have 5 % by construction, so the real row reports the held-out train
  images' share instead (independent real images: close to 5 %).

The rs-scene features of the training set are cached in ``$RSGEN_CACHE/t2i_eval/`` (keyed by the
files, the image size and the extractor's weights).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from rsgen.data.captions import CaptionRecord, holdout_split, read_caption_records, unique_captions
from rsgen.data.image_batches import center_square_transform, iter_image_batches
from rsgen.data.images import image_to_tensor
from rsgen.device import resolve_device
from rsgen.errors import RsgenError
from rsgen.files import atomic_file, cache_root, write_json
from rsgen.io import read_rgb_uint8
from rsgen.metrics.clipscore import clip_score
from rsgen.metrics.distribution import IS_SPLITS, fd_of_sets, is_of_set
from rsgen.metrics.feature_sets import FeatureSet, extract_features
from rsgen.metrics.features import MetricExtractor, build_metric_extractor
from rsgen.pipelines.text_to_image import DEFAULT_GUIDANCE, DEFAULT_STEPS, TextToImage
from rsgen.progress import progress_bar
from rsgen.shipped import display_name

if TYPE_CHECKING:
    from rsgen.models.image_text import ImageTextModel

SCENE, LITE0, CLIP_MODEL = "rs-scene", "efficientnet-lite0", "rs-clip"
HOLDOUT_FRACTION = 0.1  # = the rsvq task's data.val_fraction (configs/t2i/rsvq_cpu.yaml)
HOLDOUT_SEED = 0  # = its seed
REAL_PERCENTILE = 5.0
CACHE_VERSION = 1
EMBED_CHUNK = 256  # real images decoded and embedded this many at a time
METRIC_KEYS = (
    f"FD[{SCENE}]",
    f"FD[{LITE0}]",
    f"IS[{SCENE}]",
    f"CLIPScore[{CLIP_MODEL}]",
    "scene_accuracy",
    "nn_distance_median",
    "closer_than_real_p5",
)


# --------------------------------------------------------------------------- settings and inputs


@dataclass(frozen=True)
class T2IEvalSettings:
    """What one evaluation runs: the subset, the sampling seeds and the sampling options."""

    images: int | None = None  # cases drawn from the test split (None: all)
    seeds: tuple[int, ...] = (0,)
    steps: int | None = None  # None: min(25, the model's timesteps)
    guidance: float = DEFAULT_GUIDANCE
    truncation: float | None = None
    batch: int = 8
    subset_seed: int = 0
    holdout_fraction: float = HOLDOUT_FRACTION
    is_splits: int = IS_SPLITS

    def check(self) -> None:
        """RsgenError for a count, batch, seed list or hold-out fraction out of range (the
        sampling options are checked against each model by the pipeline)."""
        if self.images is not None and (isinstance(self.images, bool) or self.images < 1):
            raise RsgenError(f"--images must be a positive integer, got {self.images!r}")
        if self.batch < 1:
            raise RsgenError(f"--batch must be a positive integer, got {self.batch!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise RsgenError(f"--seeds must be distinct integers, got {list(self.seeds)}")
        if any(not 0 <= s < 2**63 for s in self.seeds):
            raise RsgenError(f"seeds must be in [0, 2**63), got {list(self.seeds)}")
        if not 0 < self.holdout_fraction < 1:
            raise RsgenError(f"the hold-out fraction must be in (0, 1), got {self.holdout_fraction}")


@dataclass(frozen=True)
class ModelSpec:
    """A model to evaluate: its name in the report and its pipeline folder (or shipped name)."""

    name: str
    path: str


def model_specs(arguments: Sequence[str]) -> list[ModelSpec]:
    """``NAME=PATH`` or ``PATH`` arguments as specs; a plain path is named after its folder,
    with its parent folder added where two names would collide (``run-a/best``)."""
    specs = []
    for argument in arguments:
        name, sep, path = argument.partition("=")
        if sep and name and "/" not in name and not Path(argument).exists():
            specs.append(ModelSpec(name, path))
        else:
            specs.append(ModelSpec(display_name(argument), argument))
    names = [s.name for s in specs]
    specs = [
        ModelSpec(f"{Path(s.path).parent.name}/{s.name}", s.path) if names.count(s.name) > 1 else s
        for s in specs
    ]
    if len({s.name for s in specs}) != len(specs):
        raise RsgenError("two models have the same name; name them with NAME=PATH")
    return specs


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1"`` → ``(0, 1)``; RsgenError for anything else."""
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise RsgenError(f"--seeds must be comma-separated integers, e.g. 0,1; got {text!r}") from None
    return seeds


@dataclass(frozen=True)
class EvalCase:
    """One test image: its file, scene and the caption its generated image is drawn from."""

    file: Path
    scene: str
    caption: str


def select_cases(records: Sequence[CaptionRecord], images: int | None, seed: int = 0) -> list[EvalCase]:
    """``images`` records drawn without replacement by a generator seeded with ``seed``, kept in
    file order (all of them when ``images`` is None or too large), with their first distinct
    caption."""
    indices = range(len(records))
    if images is not None and images < len(records):
        rng = np.random.default_rng(seed)
        indices = sorted(rng.choice(len(records), size=images, replace=False).tolist())
    return [
        EvalCase(records[i].path, records[i].scene, unique_captions(records[i].captions)[0]) for i in indices
    ]


# --------------------------------------------------------------------------- scoring networks


@dataclass
class Scorers:
    """The frozen networks every row is scored on: rs-scene (FD, IS, scene accuracy,
    memorisation), efficientnet-lite0 (FD) and the rs-clip image–text model (CLIP score)."""

    scene: MetricExtractor
    lite0: MetricExtractor
    clip: ImageTextModel
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def load(cls, device: str | torch.device = "cpu") -> Scorers:
        """The shipped networks on ``device``."""
        from rsgen.models.loading import load_image_text_model

        device = torch.device(device)
        scene, lite0 = build_metric_extractor(SCENE), build_metric_extractor(LITE0)
        return cls(scene, lite0, load_image_text_model(CLIP_MODEL, device), device)

    @property
    def classes(self) -> list[str]:
        """rs-scene's scene names, in logit order."""
        return list(self.scene.module.classes)  # type: ignore[union-attr]

    def embed(self, images: torch.Tensor, lite0: bool = True) -> dict[str, FeatureSet]:
        """Features of ``images`` (N, 3, H, W) in [-1, 1]: rs-scene (with logits) and, when
        ``lite0``, efficientnet-lite0."""
        options = {"device": self.device, "progress": False}
        sets = {SCENE: extract_features(images, self.scene, logits=True, **options)}
        if lite0:
            sets[LITE0] = extract_features(images, self.lite0, **options)
        return sets


def concat_sets(parts: Sequence[FeatureSet]) -> FeatureSet:
    """One :class:`FeatureSet` of several embedded with the same extractor."""
    logits = None if parts[0].logits is None else torch.cat([p.logits for p in parts])  # type: ignore[misc]
    first = parts[0]
    return FeatureSet(torch.cat([p.features for p in parts]), logits, first.extractor, first.weights)


def real_images(
    files: Sequence[Path], size: int, progress: bool = False, desc: str = "real images"
) -> Iterator[torch.Tensor]:
    """Batches of ``files`` as centre squares at ``size`` px, ``(B, 3, size, size)`` in [-1, 1]."""
    transform = center_square_transform(size)
    return iter_image_batches(
        list(files), transform, batch_size=EMBED_CHUNK, progress=progress, desc=desc, read=read_rgb_uint8
    )


def embed_files(
    files: Sequence[Path],
    size: int,
    scorers: Scorers,
    lite0: bool = True,
    progress: bool = False,
    desc: str = "",
) -> dict[str, FeatureSet]:
    """:meth:`Scorers.embed` of real images at ``size`` px, decoded a chunk at a time."""
    batches = real_images(files, size, progress, desc or "real images")
    chunks = [scorers.embed(batch, lite0) for batch in batches]
    return {name: concat_sets([c[name] for c in chunks]) for name in chunks[0]}


def _fingerprint(module: torch.nn.Module) -> str:
    digest = hashlib.sha1()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def train_features(files: Sequence[Path], size: int, scorers: Scorers, progress: bool = False) -> FeatureSet:
    """rs-scene features of the training images at ``size`` px, cached under ``$RSGEN_CACHE``."""
    key = json.dumps(
        [CACHE_VERSION, size, [str(f) for f in files], [f.stat().st_size for f in files]],
    ) + _fingerprint(scorers.scene)
    path = cache_root() / "t2i_eval" / f"train-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
    if path.is_file():
        try:
            return FeatureSet.load(path)
        except RsgenError:
            pass  # a damaged cache file is rebuilt
    features = embed_files(files, size, scorers, False, progress, "training images (once, cached)")[SCENE]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        features.save(tmp)
    return features


# --------------------------------------------------------------------------- the real reference


@dataclass
class Reference:
    """What the rows are compared with, at one image size: the cases' real test images and
    their features, the held-out train features (the real row's FD reference) and the training
    set's rs-scene features (memorisation)."""

    size: int
    cases: list[EvalCase]
    test_images: torch.Tensor
    test: dict[str, FeatureSet]
    holdout: dict[str, FeatureSet] | None
    train: FeatureSet
    train_files: list[Path]
    real_p5: float


def split_train(
    data_dir: Path, fraction: float, seed: int = HOLDOUT_SEED
) -> tuple[list[CaptionRecord], list[CaptionRecord]]:
    """(what the rsvq task trains on, what it holds out) of the ``train`` split."""
    return holdout_split(read_caption_records(data_dir, "train"), fraction, seed)


def build_reference(
    data_dir: Path,
    cases: list[EvalCase],
    size: int,
    settings: T2IEvalSettings,
    scorers: Scorers,
    progress: bool,
) -> Reference:
    """Embed the real images a run compares with (see the module docstring)."""
    train, held = split_train(data_dir, settings.holdout_fraction)
    test_images = torch.cat(list(real_images([c.file for c in cases], size, progress, "test images")))
    test = scorers.embed(test_images)
    holdout = None
    if len(held) >= 2:
        rng = np.random.default_rng(settings.subset_seed)
        count = min(len(cases), len(held))
        picked = sorted(rng.choice(len(held), size=count, replace=False).tolist())
        holdout = embed_files([held[i].path for i in picked], size, scorers, True, progress, "held-out train")
    train_files = [r.path for r in train]
    train_set = train_features(train_files, size, scorers, progress)
    distances, _ = nearest(test[SCENE], train_set)
    real_p5 = float(np.percentile(distances.numpy(), REAL_PERCENTILE))
    return Reference(size, cases, test_images, test, holdout, train_set, train_files, real_p5)


def nearest(query: FeatureSet, train: FeatureSet) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine distance ``1 - cos`` of each query to its nearest training feature, and its index."""
    q, t = F.normalize(query.features.double(), dim=1), F.normalize(train.features.double(), dim=1)
    best, index = (q @ t.T).max(dim=1)
    return (1.0 - best).clamp(min=0.0), index


# --------------------------------------------------------------------------- scoring one set


def score_set(
    images: torch.Tensor,
    sets: dict[str, FeatureSet],
    fd_reference: dict[str, FeatureSet] | None,
    ref: Reference,
    scorers: Scorers,
    is_splits: int,
) -> tuple[dict[str, float | None], list[dict[str, Any]]]:
    """Every column of one image set (images in case order) and a record per image."""
    scene_set = sets[SCENE]
    metrics: dict[str, float | None] = {}
    for name in (SCENE, LITE0):
        fd = fd_of_sets(fd_reference[name], sets[name]) if fd_reference else None
        metrics[f"FD[{name}]"] = None if fd is None else round(fd.value, 4)
    inception = is_of_set(scene_set, is_splits, seed=0)
    metrics[inception.label] = round(inception.mean, 4)
    captions = [c.caption for c in ref.cases]
    clip = clip_score(images, captions, scorers.clip, device=scorers.device, progress=False)
    metrics[clip.label] = round(clip.score, 4)
    classes = scorers.classes
    predicted = [classes[i] for i in scene_set.logits.argmax(dim=1).tolist()]  # type: ignore[union-attr]
    hits = [p == c.scene for p, c in zip(predicted, ref.cases, strict=True)]
    metrics["scene_accuracy"] = round(sum(hits) / len(hits), 4)
    distances, index = nearest(scene_set, ref.train)
    metrics["nn_distance_median"] = round(float(distances.median()), 5)
    metrics["closer_than_real_p5"] = round(float((distances < ref.real_p5).double().mean()), 4)
    records = [
        {"predicted": p, "nearest_train": ref.train_files[i].name, "nn_distance": round(float(d), 5)}
        for p, i, d in zip(predicted, index.tolist(), distances, strict=True)
    ]
    return metrics, records


def round_trip_row(
    pipe: TextToImage, ref: Reference, scorers: Scorers, is_splits: int, batch: int
) -> dict[str, Any]:
    """The cases' test images through ``pipe``'s tokenizer and back, scored like a generated set
    (the ceiling of the model; see the module docstring)."""
    decoded = torch.cat(
        [pipe.round_trip(ref.test_images[first : first + batch]) for first in range(0, len(ref.cases), batch)]
    )
    metrics, _ = score_set(decoded, scorers.embed(decoded), ref.test, ref, scorers, is_splits)
    return metrics


def real_row(ref: Reference, scorers: Scorers, is_splits: int) -> dict[str, Any]:
    """The real test images scored like a generated set (FD against the held-out train part;
    ``closer_than_real_p5`` of the held-out train images, see the module docstring)."""
    metrics, _ = score_set(ref.test_images, ref.test, None, ref, scorers, is_splits)
    if ref.holdout is not None:
        for name in (SCENE, LITE0):
            metrics[f"FD[{name}]"] = round(fd_of_sets(ref.test[name], ref.holdout[name]).value, 4)
        held, _ = nearest(ref.holdout[SCENE], ref.train)
        metrics["closer_than_real_p5"] = round(float((held < ref.real_p5).double().mean()), 4)
    else:
        metrics["closer_than_real_p5"] = None
    n_holdout = 0 if ref.holdout is None else len(ref.holdout[SCENE])
    return {"name": "real (test)", "n": len(ref.cases), "n_holdout": n_holdout, **metrics}


# --------------------------------------------------------------------------- generating


def batch_seed(seed: int, batch: int) -> int:
    """The seed of prompt batch ``batch`` of a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed, batch]).generate_state(1, dtype=np.uint64)[0] >> 1)


def generate_images(
    pipe: TextToImage, prompts: list[str], seed: int, settings: T2IEvalSettings, progress: bool = False
) -> tuple[list[Image.Image], float]:
    """One image per prompt, ``settings.batch`` prompts per batch, and the seconds it took."""
    images: list[Image.Image] = []
    start = time.perf_counter()
    starts = range(0, len(prompts), settings.batch)
    for number, first in enumerate(progress_bar(starts, desc=f"seed {seed}", enabled=progress, unit="batch")):
        result = pipe.generate_batch(
            prompts[first : first + settings.batch],
            seed=batch_seed(seed, number),
            steps=settings.steps,
            guidance=settings.guidance,
            truncation=settings.truncation,
        )
        images += result.images
    return images, time.perf_counter() - start


def image_names(cases: Sequence[EvalCase]) -> list[str]:
    """``<index>_<test image stem>.png`` per case."""
    return [f"{i:04d}_{case.file.stem}.png" for i, case in enumerate(cases)]


def save_images(folder: Path, images: Sequence[Image.Image], cases: Sequence[EvalCase]) -> None:
    """The images as PNGs and ``captions.jsonl`` beside them (``rsgen eval clip`` reads it)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for name, image, case in zip(image_names(cases), images, cases, strict=True):
        with atomic_file(folder / name) as tmp:
            image.save(tmp, format="PNG")
        lines.append(json.dumps({"file": name, "caption": case.caption, "scene": case.scene}))
    with atomic_file(folder / "captions.jsonl") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- whole runs


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation (None with one seed) of each column over the runs."""
    out: dict[str, Any] = {}
    for key in (*METRIC_KEYS, "seconds_per_image"):
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = round(statistics.fmean(values), 5) if values else None
        out[f"{key}_std"] = round(statistics.stdev(values), 5) if len(values) > 1 else None
    return out


def check_models(specs: Sequence[ModelSpec], settings: T2IEvalSettings) -> None:
    """Every model folder and the sampling options, checked without loading a network."""
    from rsgen.pipelines.text_to_image import (
        check_generation_options,
        check_pipeline_folder,
        resolve_text_to_image_model,
    )

    for spec in specs:
        max_steps = check_pipeline_folder(resolve_text_to_image_model(spec.path))
        steps = min(DEFAULT_STEPS, max_steps) if settings.steps is None else settings.steps
        check_generation_options(["x"], 1, steps, settings.guidance, settings.truncation, max_steps)


def load_test_records(data_dir: Path, classes: Sequence[str] | None = None) -> list[CaptionRecord]:
    """The ``test`` records (and a check that ``train`` has records); RsgenError for scenes
    the classifier does not know."""
    records = read_caption_records(data_dir, "test")
    read_caption_records(data_dir, "train")
    if classes is not None:
        unknown = sorted({r.scene for r in records} - set(classes))
        if unknown:
            raise RsgenError(f"test scenes that rs-scene does not know: {', '.join(unknown)}", data_dir)
    return records


def evaluate_model(
    pipe: TextToImage,
    spec: ModelSpec,
    ref: Reference,
    settings: T2IEvalSettings,
    scorers: Scorers,
    out_dir: Path | None,
    single: bool,
    progress: bool,
) -> dict[str, Any]:
    """One model's runs (one per seed), each generated, saved under ``out_dir`` and scored."""
    runs = []
    prompts = [c.caption for c in ref.cases]
    for seed in settings.seeds:
        images, seconds = generate_images(pipe, prompts, seed, settings, progress)
        folder = None
        if out_dir is not None:
            folder = out_dir / "images"
            if not single:
                folder = folder / f"{spec.name.replace('/', '_')}-seed{seed}"
            save_images(folder, images, ref.cases)
        tensor = torch.stack([image_to_tensor(image) for image in images])
        metrics, records = score_set(
            tensor, scorers.embed(tensor), ref.test, ref, scorers, settings.is_splits
        )
        runs.append(
            {
                "seed": seed,
                **metrics,
                "seconds": round(seconds, 2),
                "seconds_per_image": round(seconds / len(images), 4),
                "images_dir": None if folder is None else str(folder),
                "images": [{"file": n, **r} for n, r in zip(image_names(ref.cases), records, strict=True)],
            }
        )
    steps = settings.steps or min(DEFAULT_STEPS, pipe.max_steps)
    round_trip = round_trip_row(pipe, ref, scorers, settings.is_splits, settings.batch)
    return {
        "name": spec.name,
        "path": spec.path,
        "steps": steps,
        **summarise(runs),
        "round_trip": round_trip,
        "runs": runs,
    }


def evaluate_text_to_image(
    specs: Sequence[ModelSpec],
    data_dir: str | Path,
    settings: T2IEvalSettings | None = None,
    out_dir: str | Path | None = None,
    *,
    scorers: Scorers | None = None,
    device: str | torch.device | None = None,
    bf16: bool | str = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``specs`` on the test captions of ``data_dir`` (see the module docstring).

    Writes, when ``out_dir`` is given, the generated images (``out_dir/images/*.png``; with
    several models or seeds ``out_dir/images/<model>-seed<S>/``) with a ``captions.jsonl``, and
    ``out_dir/eval.json`` (the returned report). Everything is checked before a network loads.
    """
    settings = settings or T2IEvalSettings()
    settings.check()
    start = time.perf_counter()
    data_dir = Path(data_dir)
    records = load_test_records(data_dir)
    check_models(specs, settings)
    out = None if out_dir is None else Path(out_dir)
    if out is not None:
        check_output(out)
    device = resolve_device(device)
    scorers = scorers or Scorers.load(device)
    load_test_records(data_dir, scorers.classes)
    cases = select_cases(records, settings.images, settings.subset_seed)
    references: dict[int, Reference] = {}
    rows, real = [], None
    single = len(specs) == 1 and len(settings.seeds) == 1
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        pipe = TextToImage.from_pretrained(spec.path, device=device, bf16=bf16, progress=False)
        size = pipe.image_size[0]
        if size not in references:
            references[size] = build_reference(data_dir, cases, size, settings, scorers, progress)
        ref = references[size]
        real = real or real_row(ref, scorers, settings.is_splits)
        rows.append(evaluate_model(pipe, spec, ref, settings, scorers, out, single, progress))
        del pipe
    report = report_of(data_dir, cases, settings, references, real, rows, time.perf_counter() - start)
    if out is not None:
        write_json(out / "eval.json", report, allow_nan=False)
    return report


def check_output(out_dir: Path) -> None:
    """RsgenError when ``out_dir`` is a file or could not be created or written (nothing is
    created here: a run that fails its checks leaves nothing behind)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise RsgenError("output must be a folder", out_dir)
    existing = next(p for p in (out_dir, *out_dir.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise RsgenError("cannot write the output folder (permission denied)", out_dir)


def report_of(
    data_dir: Path,
    cases: list[EvalCase],
    settings: T2IEvalSettings,
    references: dict[int, Reference],
    real: dict[str, Any] | None,
    rows: list[dict[str, Any]],
    seconds: float,
) -> dict[str, Any]:
    """The JSON report: settings, choices, the real row and one row per model."""
    ref = next(iter(references.values()))
    return {
        "data": str(data_dir),
        "split": "test",
        "images": len(cases),
        "subset_seed": settings.subset_seed,
        "image_size": ref.size,
        "seeds": list(settings.seeds),
        "steps": settings.steps,
        "guidance": settings.guidance,
        "truncation": settings.truncation,
        "batch": settings.batch,
        "is_splits": settings.is_splits,
        "n_train": len(ref.train),
        "real_p5": round(ref.real_p5, 5),
        "fd_reference": "generated rows: the cases' test images; real row: held-out train images",
        "memorisation": "cosine distance 1 - cos of rs-scene features to the nearest training image",
        "cases": [{"file": c.file.name, "scene": c.scene, "caption": c.caption} for c in cases],
        "real": real,
        "models": rows,
        "seconds": round(seconds, 1),
    }
