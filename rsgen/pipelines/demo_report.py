"""The write-up of ``rsgen demo``: its step reports, a self-contained ``index.html`` and a PNG
contact sheet.

The page has no scripts and loads nothing from the network: inline CSS, and images and files
linked by paths relative to the demo folder, so the folder can be moved, zipped or served as is.
"""

from __future__ import annotations

import datetime
import html
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from rsgen.files import atomic_file

SHEET_TILE = 160
"""Height of the images on the contact sheet, in pixels."""
MIN_SHOWN = 256
"""Images narrower than this are shown enlarged (pixelated) on the page."""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em;
       color: #222; }
h1 { margin-bottom: 0.2em; }
.meta { color: #555; }
.note { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.5em 1em; }
section { border-top: 1px solid #ddd; margin-top: 2em; padding-top: 0.5em; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
figure { margin: 0; }
figure img { max-width: 100%; height: auto; image-rendering: pixelated; border: 1px solid #ccc; }
figcaption { font-size: 0.85em; color: #444; max-width: 36em; }
.input figcaption::before { content: "input: "; font-weight: bold; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; font-weight: normal; color: #444; }
code { font-size: 0.9em; }
"""


# ---------------------------------------------------------------------- what the demo reports


@dataclass
class Figure:
    """An image of a step, ``path`` relative to the output folder."""

    path: str
    caption: str
    role: str = "output"
    """``input`` or ``output``."""
    sheet: bool = True
    """Shown on the contact sheet too (False for one that repeats another)."""


@dataclass
class StepReport:
    """One step of the demo: what it ran on and with, what it measured and wrote."""

    name: str
    title: str
    skipped: str | None = None
    """Why the step did not run (None: it ran)."""
    settings: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    figures: list[Figure] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    """Other files it wrote (GeoTIFFs...), by role, relative to the output folder."""


@dataclass
class DemoResult:
    """What :func:`run_demo` produced (see :meth:`to_dict`, which is ``demo.json``)."""

    output_dir: str
    device: str
    threads: int
    steps: list[StepReport]
    files: dict[str, str] = field(default_factory=dict)
    seconds_total: float = 0.0

    def step(self, name: str) -> StepReport:
        """The step called ``name`` (``generate``, ``upscale``, ``edit``, ``geo_sr``)."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    @property
    def notes(self) -> list[str]:
        """One line per reason that steps were skipped for, naming those steps."""
        reasons: dict[str, list[str]] = {}
        for step in self.steps:
            if step.skipped:
                reasons.setdefault(step.skipped, []).append(step.title)
        return [f"{' and '.join(titles)} skipped: {reason}" for reason, titles in reasons.items()]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (seconds rounded to 3 decimals)."""
        data = asdict(self)
        data["seconds_total"] = round(self.seconds_total, 3)
        for step in data["steps"]:
            step["seconds"] = round(step["seconds"], 3)
        data["notes"] = self.notes
        return data


# ---------------------------------------------------------------------- the page


def write_page(result: DemoResult, path: Path) -> Path:
    """Write the demo's ``index.html`` (atomically); returns ``path``."""
    with atomic_file(path) as tmp:
        tmp.write_text(render_page(result, Path(result.output_dir)), encoding="utf-8")
    return path


def render_page(result: DemoResult, folder: Path) -> str:
    """The HTML of the page; ``folder`` is where the figures are (for their sizes)."""
    today = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    notes = "".join(f'<p class="note">{_e(note)}</p>' for note in result.notes)
    steps = "".join(_section(i + 1, step, folder) for i, step in enumerate(result.steps))
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>rsgen demo</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        "<h1>rsgen demo</h1>\n"
        f'<p class="meta">rsgen {_e(_version())} · {_e(today)} · device {_e(result.device)}, '
        f"{result.threads} torch thread(s) · total {result.seconds_total:.1f} s · "
        '<a href="contact_sheet.png">contact sheet</a> · <a href="demo.json">demo.json</a></p>\n'
        f"{notes}\n{steps}\n"
        '<p class="meta">Sample images: see <code>rsgen/samples/SOURCE.md</code> for their sources '
        "and licenses.</p>\n</body>\n</html>\n"
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rsgen")
    except PackageNotFoundError:
        return "(not installed)"


def _section(number: int, step: StepReport, folder: Path) -> str:
    head = f'<section id="{_e(step.name)}">\n<h2>{number}. {_e(step.title)}</h2>\n'
    if step.skipped:
        return head + f'<p class="note">Skipped: {_e(step.skipped)}</p>\n</section>\n'
    figures = "".join(_figure(figure, folder) for figure in step.figures)
    files = "".join(f'<li><a href="{_e(p)}">{_e(p)}</a> ({_e(role)})</li>' for role, p in step.files.items())
    return (
        head
        + f'<p class="meta">{step.seconds:.2f} s</p>\n'
        + f'<div class="figures">{figures}</div>\n'
        + _table("Settings", step.settings)
        + _table("Scores and timings", step.scores)
        + (f"<h3>Files</h3><ul>{files}</ul>\n" if files else "")
        + "</section>\n"
    )


def _figure(figure: Figure, folder: Path) -> str:
    width = ""
    try:
        with Image.open(folder / figure.path) as image:
            width = f' width="{max(image.width, MIN_SHOWN)}"'
    except OSError:
        pass
    return (
        f'<figure class="{_e(figure.role)}"><a href="{_e(figure.path)}">'
        f'<img src="{_e(figure.path)}" alt="{_e(figure.caption)}"{width}></a>'
        f"<figcaption>{_e(figure.caption)}</figcaption></figure>\n"
    )


def _table(title: str, values: dict[str, Any]) -> str:
    if not values:
        return ""
    rows = "".join(f"<tr><th>{_e(key)}</th><td>{_cell(value)}</td></tr>" for key, value in flatten(values))
    return f"<h3>{_e(title)}</h3>\n<table>{rows}</table>\n"


def flatten(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as ``(a.b.c, value)`` rows, in order."""
    rows: list[tuple[str, Any]] = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows += flatten(value, name + ".")
        else:
            rows.append((name, value))
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return "<br>".join(_e(v) for v in value)
    if isinstance(value, float):
        return _e(f"{value:g}")
    if isinstance(value, list | dict):
        return f"<code>{_e(json.dumps(value))}</code>"
    return _e(str(value))


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


# ---------------------------------------------------------------------- the contact sheet


def write_contact_sheet(result: DemoResult, path: Path, tile: int = SHEET_TILE) -> Path:
    """One labelled row per step, its images ``tile`` px high (atomically); returns ``path``."""
    folder = Path(result.output_dir)
    rows = [_sheet_row(i + 1, step, folder, tile) for i, step in enumerate(result.steps)]
    gap = 8
    width = max(row.width for row in rows) + 2 * gap
    sheet = Image.new("RGB", (width, sum(row.height for row in rows) + gap * (len(rows) + 1)), "white")
    y = gap
    for row in rows:
        sheet.paste(row, (gap, y))
        y += row.height + gap
    with atomic_file(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path


def _sheet_row(number: int, step: StepReport, folder: Path, tile: int) -> Image.Image:
    font = ImageFont.load_default()
    title, line, gap = f"{number}. {step.title}", 14, 6
    panels = [] if step.skipped else [f for f in step.figures if f.sheet]
    images = [_tile(folder / figure.path, tile) for figure in panels]
    width = max([sum(im.width for im in images) + gap * max(len(images) - 1, 0), 420])
    height = line + (tile + line if images else line)
    row = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(row)
    draw.font = font
    draw.text((0, 0), title, fill="black", font=font)
    if step.skipped:
        draw.text((0, line), _fit(draw, f"skipped: {step.skipped}", width), fill=(170, 90, 0), font=font)
        return row
    x = 0
    for figure, image in zip(panels, images, strict=True):
        row.paste(image, (x, line))
        draw.text((x, line + tile + 1), _fit(draw, figure.caption, image.width), fill=(60, 60, 60), font=font)
        x += image.width + gap
    return row


def _tile(path: Path, height: int) -> Image.Image:
    with Image.open(path) as image:
        picture = image.convert("RGB")
    width = max(1, round(picture.width * height / picture.height))
    resample = Image.Resampling.NEAREST if height > picture.height else Image.Resampling.LANCZOS
    return picture.resize((width, height), resample)


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int) -> str:
    """``text``, cut with "..." to fit ``width`` px in ``draw``'s font."""
    if draw.textlength(text) <= width:
        return text
    while text and draw.textlength(text + "...") > width:
        text = text[:-1]
    return text + "..."
