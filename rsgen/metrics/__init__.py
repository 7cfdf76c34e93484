"""Image-quality metrics and super-resolution evaluation."""

from rsgen.metrics.image_quality import psnr, rgb_to_y_bt601, ssim
from rsgen.metrics.sr_eval import SREvalResult, SRScore, evaluate_sr, format_sr_table, print_sr_table

__all__ = [
    "SREvalResult",
    "SRScore",
    "evaluate_sr",
    "format_sr_table",
    "print_sr_table",
    "psnr",
    "rgb_to_y_bt601",
    "ssim",
]
