"""Distribution metrics of image sets: Fréchet distance, KID and Inception score, and their results.

Each metric takes image sets (folders, file lists, tensors, or :class:`FeatureSet` embedded
earlier), embeds them on one extractor (:mod:`rsgen.metrics.feature_sets`) and computes the
statistic with torchmetrics (:mod:`rsgen.metrics.torchmetrics_stats`). Results carry honest
labels (``FD[efficientnet-lite0]``, ``FID[inception-v3]``, see
:func:`~rsgen.metrics.features.metric_label`) and the settings that produced them. The
``*_of_sets`` functions compute from feature sets directly, for callers that embed once and
compute several metrics (:func:`rsgen.metrics.generative.evaluate_generative`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rsgen.data.image_batches import DEFAULT_BATCH_SIZE, ImageSource
from rsgen.errors import RsgenError
from rsgen.metrics.feature_sets import FeatureSet, embed_sets
from rsgen.metrics.features import MetricExtractor, metric_label
from rsgen.metrics.torchmetrics_stats import torchmetrics_fd, torchmetrics_is, torchmetrics_kid

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_DEGREE = 3
IS_SPLITS = 10


# --------------------------------------------------------------------------- results


def _set_items(extractor: str, weights: str | None, n_real: int, n_fake: int) -> dict[str, Any]:
    return {"features": extractor, "weights": weights, "n_real": n_real, "n_fake": n_fake}


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
        """``FD[<extractor>]``, or ``FID[inception-v3]``."""
        return metric_label("FD", self.extractor)

    def metric_items(self) -> dict[str, Any]:
        """``{label: value}``."""
        return {self.label: self.value}

    def set_items(self) -> dict[str, Any]:
        """``{"features", "weights", "n_real", "n_fake"}``: what the two sets were embedded on."""
        return _set_items(self.extractor, self.weights, self.n_real, self.n_fake)

    def to_dict(self) -> dict[str, Any]:
        """``{label: value, "features", "weights", "n_real", "n_fake"}``."""
        return {**self.metric_items(), **self.set_items()}


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
        """``KID[<extractor>]``."""
        return metric_label("KID", self.extractor)

    def metric_items(self) -> dict[str, Any]:
        """``{label: mean, label_std: std, "kid_subsets", "kid_subset_size"}``."""
        return {
            self.label: self.mean,
            f"{self.label}_std": self.std,
            "kid_subsets": self.subsets,
            "kid_subset_size": self.subset_size,
        }

    def to_dict(self) -> dict[str, Any]:
        """``{label: mean, label_std: std, "kid_subsets", "kid_subset_size", "features", ...}``."""
        common = _set_items(self.extractor, self.weights, self.n_real, self.n_fake)
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
        """``IS[<extractor>]``."""
        return metric_label("IS", self.extractor)

    def metric_items(self) -> dict[str, Any]:
        """``{label: mean, label_std: std, "is_splits"}``."""
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


# --------------------------------------------------------------------------- from feature sets


def _need_two(sets: Sequence[FeatureSet], names: Sequence[str], metric: str) -> None:
    for fs, name in zip(sets, names, strict=True):
        if len(fs) < 2:
            where = fs.source or f"the {name} set"
            raise RsgenError(f"{metric} needs at least 2 images per set; {where} has {len(fs)}")


def fd_of_sets(real: FeatureSet, fake: FeatureSet) -> FDResult:
    """Fréchet distance between two embedded sets (see :func:`frechet_distance`)."""
    _need_two([real, fake], ["real", "fake"], "FD")
    value = torchmetrics_fd(real.features, fake.features)
    return FDResult(value, real.extractor, len(real), len(fake), real.weights)


def kid_of_sets(
    real: FeatureSet,
    fake: FeatureSet,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    degree: int = KID_DEGREE,
    seed: int | None = 0,
) -> KIDResult:
    """KID between two embedded sets (see :func:`kernel_inception_distance`)."""
    _need_two([real, fake], ["real", "fake"], "KID")
    if subsets < 1 or subset_size < 2:
        raise RsgenError(f"KID needs subsets >= 1 and subset size >= 2, got {subsets} and {subset_size}")
    size = min(subset_size, len(real), len(fake))
    mean, std = torchmetrics_kid(real.features, fake.features, subsets, size, degree, seed)
    return KIDResult(
        mean, std, subsets, size, degree, real.extractor, len(real), len(fake), real.weights, seed
    )


def is_of_set(fs: FeatureSet, splits: int = IS_SPLITS, seed: int | None = 0) -> ISResult:
    """Inception score of an embedded set with logits (see :func:`inception_score`)."""
    if fs.logits is None:
        raise RsgenError(f"IS needs class logits; the {fs.extractor} features of this set have none")
    if len(fs) < 1 or splits < 1:
        raise RsgenError(f"IS needs at least 1 image and 1 split, got {len(fs)} and {splits}")
    # A split of one image always scores 1: keep at least 2 images per split where possible.
    requested = max(1, min(splits, len(fs) // 2))
    mean, std = torchmetrics_is(fs.logits, requested, seed)
    used = len(torch.empty(len(fs)).chunk(requested))  # torch.chunk may make fewer, larger splits
    return ISResult(mean, std, used, fs.extractor, len(fs), fs.weights, seed)


# --------------------------------------------------------------------------- from image sets


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
    real_set, fake_set = embed_sets([real, fake], extractor, [False, False], ["real", "fake"], options)
    return fd_of_sets(real_set, fake_set)


def kernel_inception_distance(
    real: ImageSource | FeatureSet,
    fake: ImageSource | FeatureSet,
    extractor: MetricExtractor | str | None = None,
    *,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    degree: int = KID_DEGREE,
    seed: int | None = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> KIDResult:
    """KID (torchmetrics' KernelInceptionDistance on our features). ``subset_size`` is clamped
    to the smaller set (the value used is in the result); ``seed`` fixes the random subsets."""
    options = {"batch_size": batch_size, "device": device, "progress": progress}
    real_set, fake_set = embed_sets([real, fake], extractor, [False, False], ["real", "fake"], options)
    return kid_of_sets(real_set, fake_set, subsets, subset_size, degree, seed)


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
    (fs,) = embed_sets([images], extractor, [True], ["images"], options)
    return is_of_set(fs, splits, seed)
