"""Distribution metrics (FD, KID, IS) and CLIP score, streamed over image folders.

Streaming
    A folder is listed with :func:`rsgen.io.list_images` (recursive, sorted by path, hidden
    files skipped) and read ``batch_size`` images at a time, the next batch being decoded in a
    background thread while the network runs on the current one, with a tqdm progress bar on
    stderr. Only two batches of pixels are in memory at once; what is kept per image is its
    feature vector (and, for IS, its logits): N x 1280 float32 for EfficientNet-Lite0,
    5 MiB per 1000 images.

Resizing
    Each image is converted to float in [-1, 1] and resized on its own, as soon as it is read,
    by the extractor's :meth:`~rsgen.metrics.features.MetricExtractor.resize`, so a folder may
    mix image sizes: EfficientNet-Lite0 224x224 and Inception-v3 299x299, bilinear, aspect
    ratio not kept, as FID implementations do (antialiased; Inception-v3 without antialiasing,
    as pytorch-fid); rs-scene its own preprocessing (short side to 224, centre crop). For CLIP
    score each image is resized on its short side and centre-cropped to the model's
    ``image_size`` (CLIP's preprocessing, :func:`rsgen.models.image_text.resize_center_crop`).

Input checks
    Every image must be 8-bit, 3-band RGB: grayscale, grayscale + alpha, RGBA and multiband
    images raise :class:`RsgenError` naming the file and its layout, rather than being silently
    converted (a grayscale "generated" set compared with RGB references would give a
    meaningless number). A PNG palette image without transparency is expanded to RGB (lossless)
    and accepted.

torchmetrics
    The statistics are torchmetrics' own: :class:`~torchmetrics.image.fid.FrechetInceptionDistance`,
    :class:`~torchmetrics.image.kid.KernelInceptionDistance` and
    :class:`~torchmetrics.image.inception.InceptionScore`. Each set is embedded once by our
    :class:`~rsgen.metrics.features.MetricExtractor` (:func:`extract_features`), and the
    features are fed to the torchmetrics objects through a pass-through ``feature=`` module
    that has a ``num_features`` attribute (so torchmetrics does not probe it with a dummy
    image). torchmetrics applies no conversion to inputs of a custom module, except
    ``InceptionScore(normalize=True)``, which would cast them to bytes: it is built with
    ``normalize=False``. Features are passed as float64, so FD is computed and returned in
    float64. Embedding once lets FD, KID and IS share one pass, and lets a reference set be
    embedded once and compared with many generated sets (pass a :class:`FeatureSet`; it can
    be saved with :meth:`FeatureSet.save`), which is what torchmetrics'
    ``reset_real_features=False`` is for.

CLIP score
    As in the editing paper: ``100 * max(cos(e_image, e_text), 0)`` per image–caption pair,
    averaged. With several captions per image (``"captions": [...]`` in a JSONL file), each
    image's score is the mean over its captions, and the result the mean over images (every
    image weighs the same).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from rsgen.data.captions import parse_jsonl_object
from rsgen.errors import RsgenError
from rsgen.metrics.features import (
    DEFAULT_METRIC_EXTRACTOR,
    MetricExtractor,
    build_metric_extractor,
    metric_label,
)

DEFAULT_BATCH_SIZE = 32
DEFAULT_TEXT_BATCH_SIZE = 64
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
IS_SPLITS = 10
CAPTION_KEYS = ("caption", "prompt", "captions")
FILE_KEYS = ("file", "image")

ImageSource = str | Path | Sequence[str | Path] | torch.Tensor
"""A folder or image file, a list of image files, or a tensor ``(N, 3, H, W)`` in [-1, 1]."""
Resize = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- reading images


def image_paths(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """The image files of ``source``: a folder (recursive, sorted; see :func:`rsgen.io.list_images`),
    one image file, or an explicit list. RsgenError for a missing or empty folder."""
    from rsgen.io import list_images

    if isinstance(source, str | Path):
        return list_images(source)
    paths = [Path(p) for p in source]
    if not paths:
        raise RsgenError("no images given")
    return paths


def _layout_problem(count: int, roles: tuple[str, ...]) -> str | None:
    """Why a band layout is not RGB, or None when it is."""
    if count == 3:
        return None
    if count == 1:
        return "is grayscale (1 band)"
    if count == 2 and roles[-1:] == ("alpha",):
        return "is grayscale with alpha (2 bands)"
    if count == 4 and roles[-1:] == ("alpha",):
        return "is RGBA (4 bands with alpha)"
    return f"has {count} bands"


def read_rgb_strict(path: str | Path) -> np.ndarray:
    """Read an 8-bit 3-band RGB image as ``(3, H, W)`` uint8.

    Raises :class:`RsgenError` naming the file when it is missing, unreadable, not 8-bit, or
    grayscale / grayscale + alpha / RGBA / multiband ("is grayscale (1 band); metrics need
    3-band RGB images").
    """
    from rasterio.windows import Window

    from rsgen.io.raster import open_raster

    with open_raster(path, min_size=1) as source:
        info = source.info
        problem = _layout_problem(info.count, info.colorinterp)
        if problem is None and info.dtype != "uint8":
            problem = f"is {info.dtype}, not 8-bit"
        if problem is not None:
            raise RsgenError(f"{problem}; metrics need 3-band 8-bit RGB images", info.path)
        return source.read(Window(0, 0, info.width, info.height))


def to_model_range(array: np.ndarray) -> torch.Tensor:
    """``(3, H, W)`` uint8 → ``(1, 3, H, W)`` float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(array)).unsqueeze(0).float() / 127.5 - 1.0


def _load_batch(paths: Sequence[Path], resize: Resize) -> torch.Tensor:
    return torch.cat([resize(to_model_range(read_rgb_strict(p))) for p in paths])


def iter_image_batches(
    paths: Sequence[Path],
    resize: Resize,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    desc: str = "images",
) -> Iterator[torch.Tensor]:
    """Yield ``(b, 3, S, S)`` float batches in [-1, 1] of ``paths``, in order, each image read
    with :func:`read_rgb_strict` and passed through ``resize`` (which must give one size).

    The next batch is decoded in a background thread; a tqdm bar on stderr counts images.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    chunks = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    bar = tqdm(total=len(paths), desc=desc, unit="img", disable=not progress, file=sys.stderr, leave=False)
    with bar, ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_load_batch, chunks[0], resize) if chunks else None
        for index in range(len(chunks)):
            batch = pending.result()
            if index + 1 < len(chunks):
                pending = pool.submit(_load_batch, chunks[index + 1], resize)
            yield batch
            bar.update(len(batch))


def _tensor_batches(images: torch.Tensor, resize: Resize, batch_size: int) -> Iterator[torch.Tensor]:
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(
            f"expected float images (N, 3, H, W) in [-1, 1], got {tuple(images.shape)} {images.dtype}"
        )
    for start in range(0, images.shape[0], batch_size):
        yield resize(images[start : start + batch_size])


def _describe(source: object) -> str | None:
    return str(source) if isinstance(source, str | Path) else None


# --------------------------------------------------------------------------- features


@dataclass
class FeatureSet:
    """The extractor features (and optionally logits) of one image set, computed once.

    ``features``: ``(N, num_features)`` float32 on the CPU; ``logits``: ``(N, num_classes)`` or
    None; ``extractor``: the extractor name (metrics refuse to mix two extractors).
    """

    features: torch.Tensor
    logits: torch.Tensor | None
    extractor: str
    weights: str | None = None
    source: str | None = None

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def save(self, path: str | Path) -> Path:
        """Write a ``.npz`` file (features, logits, extractor name) for :meth:`load`."""
        path = Path(path)
        meta = {"extractor": self.extractor, "weights": self.weights, "source": self.source}
        arrays = {"features": self.features.numpy(), "meta": np.array(json.dumps(meta))}
        if self.logits is not None:
            arrays["logits"] = self.logits.numpy()
        try:
            with path.open("wb") as fh:
                np.savez(fh, **arrays)
        except OSError as exc:
            raise RsgenError(f"cannot write features: {exc.strerror or exc}", path) from exc
        return path

    @classmethod
    def load(cls, path: str | Path) -> FeatureSet:
        """Read a file written by :meth:`save`; RsgenError if it is not one."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                features = torch.from_numpy(data["features"].astype(np.float32))
                logits = torch.from_numpy(data["logits"].astype(np.float32)) if "logits" in data else None
        except FileNotFoundError as exc:
            raise RsgenError("feature file not found", path) from exc
        except (OSError, ValueError, KeyError) as exc:
            raise RsgenError(f"not an rsgen feature file ({exc})", path) from exc
        return cls(features, logits, meta["extractor"], meta.get("weights"), meta.get("source"))


def extract_features(
    source: ImageSource | FeatureSet,
    extractor: MetricExtractor,
    *,
    logits: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str | None = None,
) -> FeatureSet:
    """Embed an image set with ``extractor``, streaming it in batches (see the module docstring).

    ``source``: a folder or image file, a list of files, a tensor ``(N, 3, H, W)`` in [-1, 1],
    or an existing :class:`FeatureSet` (returned as is after checking it has what is asked).
    ``logits=True`` also keeps the class logits (for IS).
    """
    if isinstance(source, FeatureSet):
        _check_same_extractor([source], extractor.name)
        if logits and source.logits is None:
            raise RsgenError(f"the {extractor.name} features of {source.source or 'this set'} have no logits")
        return source
    extractor.to(device)
    if isinstance(source, torch.Tensor):
        batches = _tensor_batches(source, extractor.resize, batch_size)
    else:
        paths = image_paths(source)
        batches = iter_image_batches(paths, extractor.resize, batch_size, progress, desc or extractor.name)
    feats, outs = [], []
    with torch.inference_mode():
        for batch in batches:
            batch = batch.to(device)
            if logits:
                f, out = extractor.features_and_logits(batch)
                outs.append(out.float().cpu())
            else:
                f = extractor.features(batch)
            feats.append(f.float().cpu())
    if not feats:
        raise RsgenError(f"no images to embed in {_describe(source) or 'the given tensor'}")
    return FeatureSet(
        features=torch.cat(feats),
        logits=torch.cat(outs) if logits else None,
        extractor=extractor.name,
        weights=extractor.weights,
        source=_describe(source),
    )


def _check_same_extractor(sets: Sequence[FeatureSet], name: str | None = None) -> str:
    names = {s.extractor for s in sets} | ({name} if name else set())
    if len(names) > 1:
        raise RsgenError(f"cannot compare features of different extractors ({', '.join(sorted(names))})")
    return names.pop()


def _resolve_extractor(
    extractor: MetricExtractor | str | None, sources: Sequence[object]
) -> MetricExtractor | None:
    """``extractor`` itself, built from its name, or the default when some source needs embedding."""
    if isinstance(extractor, str):
        return build_metric_extractor(extractor)
    if extractor is None and not all(isinstance(s, FeatureSet) for s in sources):
        return build_metric_extractor(DEFAULT_METRIC_EXTRACTOR)
    return extractor


def _embed_all(
    sources: Sequence[ImageSource | FeatureSet],
    extractor: MetricExtractor | str | None,
    want_logits: Sequence[bool],
    descs: Sequence[str],
    options: dict[str, Any],
) -> list[FeatureSet]:
    net = _resolve_extractor(extractor, sources)
    sets = []
    for source, logits, desc in zip(sources, want_logits, descs, strict=True):
        if isinstance(source, FeatureSet) and net is None:
            sets.append(source)
        else:
            sets.append(extract_features(source, net, logits=logits, desc=f"{desc} [{net.name}]", **options))
    _check_same_extractor(sets)
    return sets


# --------------------------------------------------------------------------- torchmetrics glue


class _Precomputed(nn.Module):
    """A torchmetrics custom ``feature=`` module for features that are already computed: it
    returns its input unchanged, and ``num_features`` spares torchmetrics its dummy-image probe."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Fix torch's global RNG inside (KID subsets, IS split order) without disturbing the caller's."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def _quiet_metric(cls: type, **kwargs: Any) -> Any:
    """Build a torchmetrics metric without its 'saves all features in a buffer' UserWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return cls(**kwargs)


def fd_from_features(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Fréchet distance between two feature sets ``(N, D)`` and ``(M, D)``.

    Mean and covariance (unbiased, N - 1) in float64, then torchmetrics' own ``_compute_fid``
    (``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 sqrt(S_a S_b))``, the trace of the square root from
    the eigenvalues of ``S_a S_b``).
    """
    from torchmetrics.image.fid import _compute_fid

    stats = [_mean_cov(torch.as_tensor(x, dtype=torch.float64)) for x in (a, b)]
    (mu_a, cov_a), (mu_b, cov_b) = stats
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"feature dimensions differ: {mu_a.shape[0]} and {mu_b.shape[0]}")
    return float(_compute_fid(mu_a, cov_a, mu_b, cov_b))


def _mean_cov(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need features (N >= 2, D), got shape {tuple(x.shape)}")
    centred = x - x.mean(dim=0)
    return x.mean(dim=0), centred.T @ centred / (x.shape[0] - 1)


def _torchmetrics_fd(real: torch.Tensor, fake: torch.Tensor) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]), normalize=True)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def _torchmetrics_kid(
    real: torch.Tensor, fake: torch.Tensor, subsets: int, subset_size: int, degree: int, seed: int | None
) -> tuple[float, float]:
    from torchmetrics.image.kid import KernelInceptionDistance

    metric = _quiet_metric(
        KernelInceptionDistance,
        feature=_Precomputed(real.shape[1]),
        subsets=subsets,
        subset_size=subset_size,
        degree=degree,
    )
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    with _seeded(seed):
        mean, std = metric.compute()
    return float(mean), float(std)


def _torchmetrics_is(logits: torch.Tensor, splits: int, seed: int | None) -> tuple[float, float | None]:
    from torchmetrics.image.inception import InceptionScore

    # normalize=False: with True, InceptionScore casts its input to bytes even for a custom module.
    metric = _quiet_metric(
        InceptionScore, feature=_Precomputed(logits.shape[1]), splits=splits, normalize=False
    )
    metric.update(logits.double())
    with _seeded(seed), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # std() of one split: NaN, reported as None
        mean, std = metric.compute()
    return float(mean), _finite(float(std))


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class FDResult:
    """Fréchet distance between two sets on one extractor (``label``: ``FD[...]``/``FID[inception-v3]``)."""

    value: float
    extractor: str
    n_real: int
    n_fake: int
    weights: str | None = None

    @property
    def label(self) -> str:
        return metric_label("FD", self.extractor)

    def metric_items(self) -> dict[str, Any]:
        return {self.label: self.value}

    def to_dict(self) -> dict[str, Any]:
        """``{label: value, "features", "weights", "n_real", "n_fake"}``."""
        return {**self.metric_items(), **_common(self.extractor, self.weights, self.n_real, self.n_fake)}


@dataclass(frozen=True)
class KIDResult:
    """Kernel inception distance (polynomial-kernel MMD, mean and std over random subsets)."""

    mean: float
    std: float
    subsets: int
    subset_size: int
    degree: int
    extractor: str
    n_real: int
    n_fake: int
    weights: str | None = None
    seed: int | None = 0

    @property
    def label(self) -> str:
        return metric_label("KID", self.extractor)

    def metric_items(self) -> dict[str, Any]:
        return {
            self.label: self.mean,
            f"{self.label}_std": self.std,
            "kid_subsets": self.subsets,
            "kid_subset_size": self.subset_size,
        }

    def to_dict(self) -> dict[str, Any]:
        """``{label: mean, label_std: std, "kid_subsets", "kid_subset_size", "features", ...}``."""
        common = _common(self.extractor, self.weights, self.n_real, self.n_fake)
        return {**self.metric_items(), **common, "seed": self.seed}


@dataclass(frozen=True)
class ISResult:
    """Inception score of one set on the extractor's classifier (std None with one split)."""

    mean: float
    std: float | None
    splits: int
    extractor: str
    n: int
    weights: str | None = None
    seed: int | None = 0

    @property
    def label(self) -> str:
        return metric_label("IS", self.extractor)

    def metric_items(self) -> dict[str, Any]:
        return {self.label: self.mean, f"{self.label}_std": self.std, "is_splits": self.splits}

    def to_dict(self) -> dict[str, Any]:
        """``{label: mean, label_std: std, "is_splits", "features", "weights", "n", "seed"}``."""
        return {
            **self.metric_items(),
            "features": self.extractor,
            "weights": self.weights,
            "n": self.n,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class GenerativeEvalResult:
    """FD, and optionally KID and IS (of the fake set), from one embedding pass per set."""

    fd: FDResult
    kid: KIDResult | None = None
    inception: ISResult | None = None
    real: str | None = None
    fake: str | None = None
    seed: int | None = 0

    def to_dict(self) -> dict[str, Any]:
        """One flat dict: the metrics under their honest labels, then the settings (see
        ``rsgen eval fid --help``)."""
        out: dict[str, Any] = dict(self.fd.metric_items())
        for part in (self.kid, self.inception):
            if part is not None:
                out.update(part.metric_items())
        out.update(_common(self.fd.extractor, self.fd.weights, self.fd.n_real, self.fd.n_fake))
        out.update({"seed": self.seed, "real": self.real, "fake": self.fake})
        return out


def _common(extractor: str, weights: str | None, n_real: int, n_fake: int) -> dict[str, Any]:
    return {"features": extractor, "weights": weights, "n_real": n_real, "n_fake": n_fake}


# --------------------------------------------------------------------------- metrics


def _need_two(sets: Sequence[FeatureSet], names: Sequence[str], metric: str) -> None:
    for fs, name in zip(sets, names, strict=True):
        if len(fs) < 2:
            where = fs.source or f"the {name} set"
            raise RsgenError(f"{metric} needs at least 2 images per set; {where} has {len(fs)}")


def frechet_distance(
    real: ImageSource | FeatureSet,
    fake: ImageSource | FeatureSet,
    extractor: MetricExtractor | str | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> FDResult:
    """Fréchet distance between the ``extractor`` features of two image sets (torchmetrics'
    FrechetInceptionDistance on our features). ``extractor``: an instance, a registry name,
    or None for ``efficientnet-lite0`` (unused when both sets are :class:`FeatureSet`).

    With fewer images than feature dimensions (1280 for EfficientNet-Lite0, 2048 for
    Inception-v3) the covariances are singular: FD is then strongly biased, and carries
    numerical noise of order 1e-4 from the eigenvalues of their product (FD of a small set with
    itself can come out as a tiny negative number)."""
    options = {"batch_size": batch_size, "device": device, "progress": progress}
    real_set, fake_set = _embed_all([real, fake], extractor, [False, False], ["real", "fake"], options)
    return _fd_result(real_set, fake_set)


def _fd_result(real: FeatureSet, fake: FeatureSet) -> FDResult:
    _need_two([real, fake], ["real", "fake"], "FD")
    value = _torchmetrics_fd(real.features, fake.features)
    return FDResult(value, real.extractor, len(real), len(fake), real.weights)


def kernel_inception_distance(
    real: ImageSource | FeatureSet,
    fake: ImageSource | FeatureSet,
    extractor: MetricExtractor | str | None = None,
    *,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    degree: int = 3,
    seed: int | None = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> KIDResult:
    """KID (torchmetrics' KernelInceptionDistance on our features). ``subset_size`` is clamped
    to the smaller set (the value used is in the result); ``seed`` fixes the random subsets."""
    options = {"batch_size": batch_size, "device": device, "progress": progress}
    real_set, fake_set = _embed_all([real, fake], extractor, [False, False], ["real", "fake"], options)
    return _kid_result(real_set, fake_set, subsets, subset_size, degree, seed)


def _kid_result(
    real: FeatureSet, fake: FeatureSet, subsets: int, subset_size: int, degree: int, seed: int | None
) -> KIDResult:
    _need_two([real, fake], ["real", "fake"], "KID")
    if subsets < 1 or subset_size < 2:
        raise RsgenError(f"KID needs subsets >= 1 and subset size >= 2, got {subsets} and {subset_size}")
    size = min(subset_size, len(real), len(fake))
    mean, std = _torchmetrics_kid(real.features, fake.features, subsets, size, degree, seed)
    return KIDResult(
        mean, std, subsets, size, degree, real.extractor, len(real), len(fake), real.weights, seed
    )


def inception_score(
    images: ImageSource | FeatureSet,
    extractor: MetricExtractor | str | None = None,
    *,
    splits: int = IS_SPLITS,
    seed: int | None = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> ISResult:
    """Inception score ``exp(E KL(p(y|x) || p(y)))`` on the extractor's classifier (torchmetrics'
    InceptionScore on our logits), mean and std over ``splits`` random splits: at most half the
    image count (a one-image split always scores 1), and ``torch.chunk`` may make fewer; the
    number used is in the result."""
    options = {"batch_size": batch_size, "device": device, "progress": progress}
    (fs,) = _embed_all([images], extractor, [True], ["images"], options)
    return _is_result(fs, splits, seed)


def _is_result(fs: FeatureSet, splits: int, seed: int | None) -> ISResult:
    if fs.logits is None:
        raise RsgenError(f"IS needs class logits; the {fs.extractor} features of this set have none")
    if len(fs) < 1 or splits < 1:
        raise RsgenError(f"IS needs at least 1 image and 1 split, got {len(fs)} and {splits}")
    # A split of one image always scores 1: keep at least 2 images per split where possible.
    requested = max(1, min(splits, len(fs) // 2))
    mean, std = _torchmetrics_is(fs.logits, requested, seed)
    used = len(torch.empty(len(fs)).chunk(requested))  # torch.chunk may make fewer, larger splits
    return ISResult(mean, std, used, fs.extractor, len(fs), fs.weights, seed)


def evaluate_generative(
    real: ImageSource | FeatureSet,
    fake: ImageSource | FeatureSet,
    extractor: MetricExtractor | str | None = None,
    *,
    kid: bool = True,
    inception: bool = True,
    kid_subsets: int = KID_SUBSETS,
    kid_subset_size: int = KID_SUBSET_SIZE,
    is_splits: int = IS_SPLITS,
    seed: int | None = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> GenerativeEvalResult:
    """FD, KID (``kid``) and IS of ``fake`` (``inception``), embedding each set only once."""
    options = {"batch_size": batch_size, "device": device, "progress": progress}
    real_set, fake_set = _embed_all([real, fake], extractor, [False, inception], ["real", "fake"], options)
    fd = _fd_result(real_set, fake_set)
    kid_result = _kid_result(real_set, fake_set, kid_subsets, kid_subset_size, 3, seed) if kid else None
    is_result = _is_result(fake_set, is_splits, seed) if inception else None
    return GenerativeEvalResult(fd, kid_result, is_result, _describe(real), _describe(fake), seed)


# --------------------------------------------------------------------------- captions


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


# --------------------------------------------------------------------------- CLIP score


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
    captions: str | Path | Sequence[str] | Sequence[Sequence[str]],
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
    size = int(getattr(model, "image_size", 224))

    def resize(x: torch.Tensor) -> torch.Tensor:
        from rsgen.models.image_text import resize_center_crop

        return resize_center_crop(x, size)

    if tensor is not None:
        batches = _tensor_batches(tensor, resize, batch_size)
    else:
        paths = [p.path for p in pairs]
        batches = iter_image_batches(paths, resize, batch_size, progress, f"CLIP score ({model.name})")
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
        images=_describe(images),
        captions=_describe(captions),
    )


def _caption_pairs(
    images: ImageSource, captions: str | Path | Sequence[str] | Sequence[Sequence[str]]
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
