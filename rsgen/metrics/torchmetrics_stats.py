"""FD, KID and IS of feature tensors, computed by torchmetrics itself.

The statistics are torchmetrics' own: :class:`~torchmetrics.image.fid.FrechetInceptionDistance`,
:class:`~torchmetrics.image.kid.KernelInceptionDistance` and
:class:`~torchmetrics.image.inception.InceptionScore`. The images are embedded beforehand by our
extractors (:mod:`rsgen.metrics.feature_sets`), and the features are fed to the torchmetrics
objects through a pass-through ``feature=`` module that has a ``num_features`` attribute (so
torchmetrics does not probe it with a dummy image). torchmetrics applies no conversion to inputs
of a custom module, except ``InceptionScore(normalize=True)``, which would cast them to bytes:
it is built with ``normalize=False``. Features are passed as float64, so FD is computed and
returned in float64. Randomness (KID subsets, IS split order) is seeded without disturbing the
caller's RNG.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn


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


def torchmetrics_fd(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FD of two feature tensors ``(N, D)``, ``(M, D)`` by ``FrechetInceptionDistance`` (float64)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]), normalize=True)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def torchmetrics_kid(
    real: torch.Tensor, fake: torch.Tensor, subsets: int, subset_size: int, degree: int, seed: int | None
) -> tuple[float, float]:
    """(mean, std) of ``KernelInceptionDistance`` over ``subsets`` random subsets (seeded)."""
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


def torchmetrics_is(logits: torch.Tensor, splits: int, seed: int | None) -> tuple[float, float | None]:
    """(mean, std) of ``InceptionScore`` on class logits over ``splits`` splits (seeded); the
    std is None when it is not finite (one split)."""
    from torchmetrics.image.inception import InceptionScore

    # normalize=False: with True, InceptionScore casts its input to bytes even for a custom module.
    metric = _quiet_metric(
        InceptionScore, feature=_Precomputed(logits.shape[1]), splits=splits, normalize=False
    )
    metric.update(logits.double())
    with _seeded(seed), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # std() of one split: NaN, reported as None
        mean, std = metric.compute()
    std = float(std)
    return float(mean), std if math.isfinite(std) else None
