"""Plot a training log (``log.jsonl``): whatever numbers a task logs, over steps.

The first panel holds every numeric key of the training records (losses, accuracies,
temperatures, gradient norms...; not the bookkeeping in :data:`BOOKKEEPING`), raw and as a moving
average, on a log scale when all are positive (so keys of very different size stay readable).
The other panels hold the ``val_*`` keys of the ``eval`` records, grouped so that each panel's
keys share a scale (:func:`validation_groups`): fractions (every value in [0, 1]: recalls,
accuracies) together, the rest by magnitude. A key ``val_<name>_<ref>`` next to ``val_<name>``,
``<ref>`` one of :data:`REFERENCE_SUFFIXES` (``val_psnr_bicubic``), is the reference the model is
compared with: drawn dashed in the colour of ``val_<name>``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from rsgen.errors import RsgenError
from rsgen.files import atomic_file

#: Keys of training records that are not curves.
BOOKKEEPING = frozenset({"step", "time", "lr", "sec_per_step", "event", "end", "world_size", "threads"})
#: Non-fraction validation keys share a panel while their typical sizes differ by at most this.
MAGNITUDE_RATIO = 3.0
#: Training curves are smoothed over this many logs, or a tenth of the log when shorter.
SMOOTHING = 15
#: ``val_<name>_<suffix>`` is a reference value for ``val_<name>`` (e.g. bicubic for PSNR).
REFERENCE_SUFFIXES = ("bicubic", "baseline", "reference")


def read_log(path: str | Path) -> list[dict]:
    """The JSON records of a ``log.jsonl`` file (or of ``<run>/log.jsonl``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "log.jsonl"
    if not path.is_file():
        raise RsgenError("training log not found", path)
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise RsgenError(f"line {number} is not JSON ({exc.msg})", path) from exc
    return records


def moving_average(values: list[float] | tuple[float, ...], window: int) -> list[float]:
    """Trailing mean over up to ``window`` values (shorter at the start)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _numeric_keys(records: list[dict], keep) -> list[str]:
    """Keys (first-seen order) with a finite number in some record, filtered by ``keep``."""
    keys: dict[str, None] = {}
    for record in records:
        for key, value in record.items():
            if keep(key) and _is_number(value):
                keys.setdefault(key)
    return list(keys)


def _series(records: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [(r["step"], r[key]) for r in records if _is_number(r.get(key))]
    return [p[0] for p in points], [float(p[1]) for p in points]


def training_keys(records: list[dict]) -> list[str]:
    """The numeric keys of the training records (those with a step and no event)."""
    steps = [r for r in records if "step" in r and "event" not in r]
    return _numeric_keys(steps, lambda key: key not in BOOKKEEPING)


def baseline_of(key: str, keys: list[str]) -> str | None:
    """The key ``key`` is the reference for (``val_psnr`` for ``val_psnr_bicubic``), if any."""
    for suffix in REFERENCE_SUFFIXES:
        base = key.removesuffix("_" + suffix)
        if base != key and base in keys:
            return base
    return None


def validation_groups(records: list[dict]) -> list[list[str]]:
    """The ``val_*`` keys of the eval records, one list per panel: the fractions, and the
    others by typical size (a new panel when a key's median magnitude exceeds
    :data:`MAGNITUDE_RATIO` times that of the panel's smallest); references join their key's
    panel. Panels and keys come in the order the log first names them."""
    evals = [r for r in records if r.get("event") == "eval"]
    keys = _numeric_keys(evals, lambda key: key.startswith("val_"))
    if not keys:
        return []
    values = {key: _series(evals, key)[1] for key in keys}
    bases = {key: baseline_of(key, keys) for key in keys}
    fractions, others = [], []
    for key in keys:
        if bases[key] is None:
            (fractions if all(0.0 <= v <= 1.0 for v in values[key]) else others).append(key)
    size = {key: sorted(abs(v) for v in values[key])[len(values[key]) // 2] for key in others}
    groups = [fractions] if fractions else []
    first = None
    for key in sorted(others, key=lambda k: size[k]):
        if first is None or size[key] > MAGNITUDE_RATIO * max(size[first], 1e-12):
            groups.append([])
            first = key
        groups[-1].append(key)
    for key in keys:
        if bases[key] is not None:
            for group in groups:
                if bases[key] in group:
                    group.append(key)
    # Panels and their lines in the order the task logs its keys.
    order = {key: i for i, key in enumerate(keys)}
    groups = [sorted(group, key=order.__getitem__) for group in groups]
    return sorted(groups, key=lambda group: order[group[0]])


def plot_curves(log_path: str | Path, out_png: str | Path, title: str | None = None) -> Path:
    """Write a PNG of the training curves of a run (see the module docstring); returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    steps = [r for r in records if "step" in r and "event" not in r]
    evals = [r for r in records if r.get("event") == "eval"]
    train_keys = training_keys(records)
    groups = validation_groups(records)
    panels = 1 + max(len(groups), 1)
    columns = min(panels, 3)
    rows = math.ceil(panels / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 4 * rows), squeeze=False)
    axes = axes.ravel()

    ax = axes[0]
    positive = True
    for key in train_keys:
        x, y = _series(steps, key)
        positive = positive and min(y) > 0
        window = max(1, min(SMOOTHING, len(y) // 10))
        if window == 1:
            ax.plot(x, y, marker="." if len(y) < 30 else None, label=key)
            continue
        (raw,) = ax.plot(x, y, linewidth=0.5, alpha=0.3)
        ax.plot(x, moving_average(y, window), color=raw.get_color(), label=f"{key} (mean of {window} logs)")
    ax.set(xlabel="step", title="training", yscale="log" if positive and train_keys else "linear")
    if train_keys:
        ax.legend(fontsize="small")

    for ax, group in zip(axes[1:], groups, strict=False):
        colours: dict[str, object] = {}
        for key in group:
            base = baseline_of(key, group)
            x, y = _series(evals, key)
            style = {"linestyle": "--", "color": colours[base]} if base in colours else {"marker": "o"}
            (line,) = ax.plot(x, y, markersize=3, label=key.removeprefix("val_"), **style)
            colours[key] = line.get_color()
        ax.set(xlabel="step", title="validation")
        ax.legend(fontsize="small", ncol=2 if len(group) > 6 else 1)
    if not groups:
        axes[1].set(xlabel="step", title="validation (none logged)")
    for ax in axes[panels:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    try:
        with atomic_file(out_png) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return out_png
