"""Plot a training log (``log.jsonl``): losses and validation numbers over steps."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from rsgen.errors import RsgenError

LOSS_KEYS = ("loss", "content", "perceptual", "adversarial", "d_loss")
# Validation numbers plotted for runs without a PSNR (retrieval, classification), all in [0, 1].
FRACTION_KEYS = ("val_t2i_r10", "val_i2t_r10", "val_mean_recall", "val_zeroshot_acc", "val_acc")


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


def plot_curves(log_path: str | Path, out_png: str | Path, title: str | None = None) -> Path:
    """Write a two-panel PNG: training losses (log scale) and validation numbers (PSNR vs
    bicubic for super-resolution; recalls / accuracies for RS-CLIP and rs-scene)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    steps = [r for r in records if "step" in r and "event" not in r]
    evals = [r for r in records if r.get("event") == "eval"]
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(11, 4))
    for key in LOSS_KEYS:
        points = [(r["step"], r[key]) for r in steps if key in r]
        if points:
            x, y = zip(*points, strict=True)
            (raw,) = ax_loss.plot(x, y, linewidth=0.5, alpha=0.3)
            ax_loss.plot(x, moving_average(y, 15), color=raw.get_color(), label=f"{key} (mean of 15 logs)")
    ax_loss.set(xlabel="step", ylabel="loss", yscale="log", title="training losses")
    ax_loss.legend()
    if evals and "val_psnr" in evals[0]:
        x = [r["step"] for r in evals]
        ax_psnr.plot(x, [r["val_psnr"] for r in evals], marker="o", label="model")
        ax_psnr.plot(x, [r["val_psnr_bicubic"] for r in evals], linestyle="--", label="bicubic")
        ax_psnr.legend()
        ax_psnr.set(xlabel="step", ylabel="PSNR (dB, RGB)", title="validation PSNR")
    elif evals:
        for key in FRACTION_KEYS:
            points = [(r["step"], r[key]) for r in evals if key in r]
            if points:
                x, y = zip(*points, strict=True)
                ax_psnr.plot(x, y, marker="o", label=key.removeprefix("val_"))
        ax_psnr.legend()
        ax_psnr.set(xlabel="step", ylabel="fraction", title="validation (held-out training images)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=out_png.parent if str(out_png.parent) else ".")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, out_png)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out_png
