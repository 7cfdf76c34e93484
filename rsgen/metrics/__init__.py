"""Image-quality metrics, super-resolution evaluation and generative metrics (FD/KID/IS, CLIP score).

Where each lives: ``image_quality`` (PSNR, SSIM), ``sr_eval`` (a model against bicubic),
``features`` (the extractors of FD/KID/IS), ``feature_sets`` (embedded image sets),
``distribution`` (FD, KID, IS), ``torchmetrics_stats`` (their torchmetrics computation),
``generative`` (all three in one pass), ``clip_score``, and ``retrieval`` (image–text recall,
zero-shot accuracy). Image reading and caption files are in :mod:`rsgen.data`.
"""

from rsgen.data.captions import CaptionedImage, read_captions
from rsgen.data.image_batches import iter_image_batches
from rsgen.metrics.clipscore import CLIPScoreResult, clip_score
from rsgen.metrics.distribution import (
    FDResult,
    ISResult,
    KIDResult,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
)
from rsgen.metrics.feature_sets import FeatureSet, extract_features
from rsgen.metrics.features import (
    METRIC_EXTRACTORS,
    MetricExtractor,
    build_metric_extractor,
    metric_label,
)
from rsgen.metrics.generative import GenerativeEvalResult, evaluate_generative
from rsgen.metrics.image_quality import psnr, rgb_to_y_bt601, ssim
from rsgen.metrics.sr_eval import SREvalResult, SRScore, evaluate_sr
from rsgen.metrics.torchmetrics_stats import fd_from_features

__all__ = [
    "METRIC_EXTRACTORS",
    "CLIPScoreResult",
    "CaptionedImage",
    "FDResult",
    "FeatureSet",
    "GenerativeEvalResult",
    "ISResult",
    "KIDResult",
    "MetricExtractor",
    "SREvalResult",
    "SRScore",
    "build_metric_extractor",
    "clip_score",
    "evaluate_generative",
    "evaluate_sr",
    "extract_features",
    "fd_from_features",
    "frechet_distance",
    "inception_score",
    "iter_image_batches",
    "kernel_inception_distance",
    "metric_label",
    "psnr",
    "read_captions",
    "rgb_to_y_bt601",
    "ssim",
]
