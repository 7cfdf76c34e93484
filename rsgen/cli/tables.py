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


#: ``rsgen eval t2i``'s rows: (label, report key, decimals).
T2I_ROWS = (
    ("FD[rs-scene]", "FD[rs-scene]", 2),
    ("FD[efficientnet-lite0]", "FD[efficientnet-lite0]", 2),
    ("IS[rs-scene]", "IS[rs-scene]", 3),
    ("CLIPScore[rs-clip]", "CLIPScore[rs-clip]", 2),
    ("scene accuracy", "scene_accuracy", 3),
    ("NN distance, median", "nn_distance_median", 4),
    ("closer than real p5", "closer_than_real_p5", 3),
    ("s / image", "seconds_per_image", 3),
)


def format_t2i_table(report: dict) -> Table:
    """``rsgen eval t2i``'s table: a row per metric, a column for the real test images and one per
    model (mean ± std over the seeds), so that it stays readable in 80 columns."""
    seeds = ", ".join(map(str, report["seeds"]))
    caption = (
        f"{report['images']} test captions, {report['image_size']} px, seeds {seeds}, guidance "
        f"{report['guidance']}. FD: to the test images (real column: test vs {report['real']['n_holdout']} "
        f"held-out train images). NN: cosine distance of rs-scene features to the nearest of "
        f"{report['n_train']} training images (real p5 = {report['real_p5']:.4f}). {report['seconds']:.0f} s"
    )
    table = Table(title="Text-to-image evaluation", caption=escape(caption))
    table.add_column("metric")
    rows = [report["real"], *report["models"], *_round_trip_rows(report["models"])]
    for row in rows:
        table.add_column(escape(row["name"]), justify="right")
    for label, key, digits in T2I_ROWS:
        table.add_row(escape(label), *(_t2i_cell(row, key, digits) for row in rows))
    return table


def _round_trip_rows(models: list[dict]) -> list[dict]:
    """A column per distinct tokenizer round trip (models sharing a tokenizer share one)."""
    seen: list[dict] = []
    rows: list[dict] = []
    for model in models:
        round_trip = model.get("round_trip")
        if round_trip and round_trip not in seen:
            seen.append(round_trip)
            rows.append({"name": f"round trip ({model['name']})", **round_trip})
    return rows


def print_t2i_table(report: dict, console: Console | None = None) -> None:
    """Print :func:`format_t2i_table` to ``console`` (a new stdout console by default)."""
    (console or Console()).print(format_t2i_table(report))


def _t2i_cell(row: dict, key: str, digits: int) -> str:
    value, std = row.get(key), row.get(f"{key}_std")
    text = format_number(value, digits)
    return text if std is None or value is None else f"{text} ± {std:.{digits}f}"
