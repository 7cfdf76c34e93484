"""Image-quality metrics, super-resolution evaluation and generative metrics (FD/KID/IS, CLIP score)."""

from rsgen.metrics.features import (
    METRIC_EXTRACTORS,
    MetricExtractor,
    build_metric_extractor,
    metric_label,
)
from rsgen.metrics.generative import (
    CaptionedImage,
    CLIPScoreResult,
    FDResult,
    FeatureSet,
    GenerativeEvalResult,
    ISResult,
    KIDResult,
    clip_score,
    evaluate_generative,
    extract_features,
    fd_from_features,
    frechet_distance,
    inception_score,
    iter_image_batches,
    kernel_inception_distance,
    read_captions,
)
from rsgen.metrics.image_quality import psnr, rgb_to_y_bt601, ssim
from rsgen.metrics.sr_eval import SREvalResult, SRScore, evaluate_sr, format_sr_table, print_sr_table

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
    "format_sr_table",
    "frechet_distance",
    "inception_score",
    "iter_image_batches",
    "kernel_inception_distance",
    "metric_label",
    "print_sr_table",
    "psnr",
    "read_captions",
    "rgb_to_y_bt601",
    "ssim",
]
