"""CPU benchmark of the embeddings behind rsgen's metrics: images/s, texts/s, peak memory.

Run it on an idle machine, from the repository root::

    python benchmarks/bench_embed.py --json embed.json

Measures, fp32, with ``--threads`` torch threads (default 2):

1. image embedding throughput (images/s, ``--size`` 224 px, ``--batch-size`` 32) of the
   ``efficientnet-lite0`` metric extractor (FD/KID features) and of the image tower of the
   image–text model ``--model`` (default ``rs-clip``);
2. text embedding throughput (texts/s, ``--text-batch-size`` 64) of that model;
3. the time to stream a folder (``--data``, first ``--limit`` images) through FD features with
   :func:`rsgen.metrics.extract_features`, decoding included.

A model that cannot be loaded is reported as skipped, with the reason. Each timing is the
median of ``--repeats`` runs after ``--warmup`` untimed runs; peak RSS is the process's
``ru_maxrss`` after each row (a running maximum). See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from rsgen.data.image_batches import image_paths  # noqa: E402
from rsgen.metrics.feature_sets import extract_features  # noqa: E402
from rsgen.metrics.features import build_metric_extractor  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sr import cpu_model  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "rsicd_aid150" / "images"
CAPTIONS = (
    "many buildings and green trees are around a playground .",
    "a river with a bridge crossing it passes through a dense residential area",
    "several white storage tanks stand beside a road",
    "an airport with two runways and some planes parked near the terminal .",
    "green farmland is divided into rectangular fields",
    "the beach is next to the blue sea and a row of houses",
    "a large parking lot full of cars",
    "dense forest",
)


# --------------------------------------------------------------------------- helpers


def sig(value: float, digits: int = 4) -> float:
    """``value`` rounded to ``digits`` significant digits."""
    return float(f"{value:.{digits}g}")


def log(message: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def peak_rss_mib() -> float:
    """Peak resident set of this process so far (``ru_maxrss`` is in KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def machine_info() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def median_seconds(fn: Callable[[], object], warmup: int, repeats: int) -> tuple[float, int]:
    """(median seconds of ``repeats`` timed calls after ``warmup`` untimed ones, runs)."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            tic = time.perf_counter()
            fn()
            times.append(time.perf_counter() - tic)
    return statistics.median(times), len(times)


def row(section: str, model: str, batch: int, unit: str, seconds: float, runs: int, note: str = "") -> dict:
    return {
        "section": section,
        "model": model,
        "batch": batch,
        "runs": runs,
        "seconds": sig(seconds),
        "per_s": sig(batch / seconds),
        "unit": unit,
        "peak_rss_mib": peak_rss_mib(),
        "status": "ok",
        "note": note,
    }


def skipped(section: str, model: str, reason: str) -> dict:
    return {
        "section": section,
        "model": model,
        "batch": None,
        "runs": 0,
        "seconds": None,
        "per_s": None,
        "unit": "",
        "peak_rss_mib": peak_rss_mib(),
        "status": "skipped",
        "note": " ".join(reason.split())[:300],
    }


# --------------------------------------------------------------------------- sections


def bench_metric_extractor(args: argparse.Namespace) -> dict:
    extractor = build_metric_extractor("efficientnet-lite0")
    images = torch.rand(args.batch_size, 3, args.size, args.size) * 2 - 1
    seconds, runs = median_seconds(lambda: extractor.features(images), args.warmup, args.repeats)
    return row(
        "image embedding",
        "efficientnet-lite0 (FD features)",
        args.batch_size,
        "images/s",
        seconds,
        runs,
        f"{args.size} px",
    )


def load_model(name: str) -> tuple[Any, str | None]:
    """(the image-text model, None) or (None, why it could not be loaded)."""
    if name.lower() == "none":
        return None, "disabled with --model none"
    try:
        from rsgen.models.loading import load_image_text_model

        return load_image_text_model(name), None
    except Exception as exc:  # noqa: BLE001 - any failure is reported, not raised
        return None, f"cannot load {name!r}: {type(exc).__name__}: {exc}"


def bench_image_text(args: argparse.Namespace) -> list[dict]:
    model, reason = load_model(args.model)
    if model is None:
        return [skipped("image embedding", args.model, reason), skipped("text embedding", args.model, reason)]
    try:
        return measure_image_text(model, args)
    except Exception as exc:  # noqa: BLE001 - a broken model is reported, the other rows still run
        reason = f"{args.model!r} failed: {type(exc).__name__}: {exc}"
        return [skipped("image embedding", args.model, reason), skipped("text embedding", args.model, reason)]


def measure_image_text(model: Any, args: argparse.Namespace) -> list[dict]:
    name = str(getattr(model, "name", args.model))
    images = torch.rand(args.batch_size, 3, args.size, args.size) * 2 - 1
    texts = [CAPTIONS[i % len(CAPTIONS)] for i in range(args.text_batch_size)]
    image_s, image_runs = median_seconds(lambda: model.encode_image(images), args.warmup, args.repeats)
    image_row = row(
        "image embedding",
        f"{name} image tower",
        args.batch_size,
        "images/s",
        image_s,
        image_runs,
        f"{args.size} px input, resized to {getattr(model, 'image_size', '?')} px by the model",
    )
    text_s, text_runs = median_seconds(lambda: model.encode_text(texts), args.warmup, args.repeats)
    text_row = row(
        "text embedding",
        f"{name} text tower",
        args.text_batch_size,
        "texts/s",
        text_s,
        text_runs,
        f"{len(CAPTIONS)} RSICD-style captions of 2-13 words, cycled",
    )
    return [image_row, text_row]


def bench_stream(args: argparse.Namespace) -> dict:
    section = "stream folder -> FD features"
    try:
        paths = image_paths(args.data)[: args.limit]
    except Exception as exc:  # noqa: BLE001 - e.g. the shared data folder is absent
        return skipped(section, "efficientnet-lite0", str(exc))
    extractor = build_metric_extractor("efficientnet-lite0")
    tic = time.perf_counter()
    features = extract_features(paths, extractor, batch_size=args.batch_size, progress=False)
    seconds = time.perf_counter() - tic
    result = row(section, "efficientnet-lite0", len(features), "images/s", seconds, 1)
    result["note"] = f"{len(features)} images of {args.data}, decoding included, batch {args.batch_size}"
    return result


# --------------------------------------------------------------------------- report


COLUMNS = [
    ("section", lambda r: r["section"]),
    ("model", lambda r: r["model"]),
    ("batch / images", lambda r: "" if r["batch"] is None else str(r["batch"])),
    ("runs", lambda r: str(r["runs"])),
    ("s (median)", lambda r: "" if r["seconds"] is None else f"{r['seconds']:.4g}"),
    ("throughput", lambda r: "skipped" if r["per_s"] is None else f"{r['per_s']:.4g} {r['unit']}"),
    ("peak RSS MiB", lambda r: f"{r['peak_rss_mib']:.0f}"),
    ("note", lambda r: r["note"]),
]


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(name for name, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(get(r).replace("|", "\\|") for _, get in COLUMNS) + " |")
    return "\n".join(lines)


def render(results: dict) -> str:
    m = results["machine"]
    header = (
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, torch {m['torch']}, threads: "
        f"{m['threads']}, fp32, load average at start {m['load_average_1min']}. "
        f"Command: `{results['command']}`"
    )
    return f"{header}\n\n{markdown_table(results['rows'])}\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--model", default="rs-clip", help="image-text model name or file ('none' to skip)")
    add("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    add("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    add("--text-batch-size", type=int, default=64, help="texts per forward pass (default 64)")
    add("--size", type=int, default=224, help="image side in pixels (default 224)")
    add("--warmup", type=int, default=1, help="untimed runs before timing (default 1)")
    add("--repeats", type=int, default=5, help="timed runs, median reported (default 5)")
    add("--data", type=Path, default=DEFAULT_DATA, help="folder streamed through FD features")
    add("--limit", type=int, default=256, help="stream only the first N images (default 256)")
    add("--json", type=Path, help="write the results as JSON here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {
        "command": shlex.join(["python", "benchmarks/bench_embed.py", *argv]),
        "machine": machine_info(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": [],
    }
    log("efficientnet-lite0 metric extractor")
    results["rows"].append(bench_metric_extractor(args))
    log(f"image-text model {args.model}")
    results["rows"].extend(bench_image_text(args))
    log(f"streaming {args.data} (limit {args.limit})")
    results["rows"].append(bench_stream(args))
    results["machine"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
