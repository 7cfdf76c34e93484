"""``rsgen eval fid``'s evaluation: FD, KID and IS of a generated set against a real one.

:func:`evaluate_generative` embeds each set once (:mod:`rsgen.metrics.feature_sets`) and
computes every requested metric from those features (:mod:`rsgen.metrics.distribution`), so a
folder is read once however many metrics are asked. Where the pieces live:

- reading, checking and streaming images: :mod:`rsgen.data.image_batches`;
- feature extractors and honest labels: :mod:`rsgen.metrics.features`;
- embedded sets (:class:`~rsgen.metrics.feature_sets.FeatureSet`, save/load):
  :mod:`rsgen.metrics.feature_sets`;
- FD / KID / IS and their results: :mod:`rsgen.metrics.distribution`, computed by
  torchmetrics through :mod:`rsgen.metrics.torchmetrics_stats`;
- CLIP score: :mod:`rsgen.metrics.clipscore`, its caption files :mod:`rsgen.data.captions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rsgen.data.image_batches import DEFAULT_BATCH_SIZE, ImageSource, source_name
from rsgen.metrics.distribution import (
    IS_SPLITS,
    KID_DEGREE,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    FDResult,
    ISResult,
    KIDResult,
    fd_of_sets,
    is_of_set,
    kid_of_sets,
)
from rsgen.metrics.feature_sets import FeatureSet, embed_sets
from rsgen.metrics.features import MetricExtractor


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
        out.update(self.fd.set_items())
        out.update({"seed": self.seed, "real": self.real, "fake": self.fake})
        return out


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
    """FD, KID (``kid``) and IS of ``fake`` (``inception``), embedding each set only once.

    ``extractor``: an instance, a registry name, or None for ``efficientnet-lite0``; the other
    arguments are those of :func:`~rsgen.metrics.distribution.kernel_inception_distance` and
    :func:`~rsgen.metrics.distribution.inception_score`.
    """
    options = {"batch_size": batch_size, "device": device, "progress": progress}
    real_set, fake_set = embed_sets([real, fake], extractor, [False, inception], ["real", "fake"], options)
    fd = fd_of_sets(real_set, fake_set)
    kid_result = None
    if kid:
        kid_result = kid_of_sets(real_set, fake_set, kid_subsets, kid_subset_size, KID_DEGREE, seed)
    is_result = is_of_set(fake_set, is_splits, seed) if inception else None
    return GenerativeEvalResult(fd, kid_result, is_result, source_name(real), source_name(fake), seed)
