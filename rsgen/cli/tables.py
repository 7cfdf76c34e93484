"""Tables the command line prints (rich) from evaluation results computed in :mod:`rsgen.metrics`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:  # annotations only: importing the CLI stays cheap
    from rsgen.metrics.sr_eval import SREvalResult, SRScore


def print_metric_table(title: str, rows: list[tuple[str, str]], caption: str) -> None:
    """Print a two-column (metric, value) table with a title and a caption."""
    # Labels such as FD[efficientnet-lite0] must not be read as rich markup tags.
    table = Table(title=escape(title), caption=escape(caption))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(escape(name), escape(value))
    Console().print(table)


def format_number(value: float | None, digits: int = 4) -> str:
    """``value`` with ``digits`` decimals, or ``n/a`` when there is none."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_sr_table(result: SREvalResult) -> Table:
    """``rsgen eval sr``'s table: rows bicubic and the model, columns PSNR/SSIM on RGB and Y, and a
    caption with the image count, scale, gain over bicubic and time per image."""
    table = Table(title=f"Super-resolution x{result.scale}", caption=_sr_caption(result))
    table.add_column("Method")
    for header in ("PSNR RGB (dB)", "SSIM RGB", "PSNR Y (dB)", "SSIM Y"):
        table.add_column(header, justify="right")
    table.add_row("bicubic", *_score_cells(result.bicubic))
    table.add_row(result.model_name, *_score_cells(result.model), style="bold")
    return table


def print_sr_table(result: SREvalResult, console: Console | None = None) -> None:
    """Print :func:`format_sr_table` to ``console`` (a new stdout console by default)."""
    (console or Console()).print(format_sr_table(result))


def _score_cells(score: SRScore) -> list[str]:
    """Table cells for one row."""
    return [f"{score.psnr_rgb:.2f}", f"{score.ssim_rgb:.4f}", f"{score.psnr_y:.2f}", f"{score.ssim_y:.4f}"]


def _sr_caption(result: SREvalResult) -> str:
    """One-line summary under the table."""
    noun = "image" if result.num_images == 1 else "images"
    return (
        f"{result.num_images} {noun}, x{result.scale}, border {result.scale} px ignored; "
        f"gain over bicubic {result.gain_db_rgb:+.2f} dB RGB / {result.gain_db_y:+.2f} dB Y; "
        f"{result.seconds_per_image * 1000:.1f} ms per image"
    )
