"""CPU benchmark of DEGAN super-resolution: inference speed, peak memory, training speed.

Run it on an idle machine, from the repository root::

    python benchmarks/bench_sr.py --json bench.json --markdown bench.md

Everything is measured in one run so the numbers are comparable. Weights are random
(speed does not depend on them). ``--quick`` shrinks every size so the whole run takes
seconds: it checks that the benchmark works, its numbers mean nothing. See
``benchmarks/README.md`` for what each number means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from rsgen.config import load_config  # noqa: E402
from rsgen.data.degradation import bicubic_upscale  # noqa: E402
from rsgen.pipelines.super_resolution import SuperResolver  # noqa: E402

SCALE = 4
SR_CONFIGS = ("degan-paper", "degan-cpu")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
MIB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Sizes and repeat counts of one benchmark run."""

    lr_size: int  # LR side of the inference image (output = lr_size * 4)
    bf16_small_size: int  # LR side for bf16 when the CPU has no bf16 instructions
    tile: int
    overlap: int
    batch_size: int
    repeats: int  # timed runs per DEGAN variant (at most; see budget)
    budget: float  # no further DEGAN repeat once the timed runs of a variant took this long (s)
    memory_lr_sizes: tuple[tuple[int, int], ...]  # LR (width, height) of each memory-test GeoTIFF
    memory_configs: tuple[str, ...]
    memory_in_memory_path: bool  # also SuperResolver(array) on the whole scene
    train_steps: int  # timed steps per phase (degan-cpu)
    paper_train_steps: int  # timed steps per phase (degan-paper)
    train_overrides: tuple[str, ...]
    synthetic_data: bool  # always train on synthetic images (else only when shared data is absent)


DEFAULT = Settings(
    lr_size=512,
    bf16_small_size=64,
    tile=64,
    overlap=16,
    batch_size=4,
    repeats=3,
    budget=60.0,
    memory_lr_sizes=((250, 250), (500, 500), (1000, 1000), (250, 2000), (2000, 250)),
    memory_configs=("degan-cpu",),
    memory_in_memory_path=False,
    train_steps=5,
    paper_train_steps=2,
    train_overrides=(),
    synthetic_data=False,
)
QUICK = Settings(
    lr_size=16,
    bf16_small_size=8,
    tile=12,
    overlap=4,
    batch_size=4,
    repeats=1,
    budget=60.0,
    memory_lr_sizes=((24, 24), (16, 48), (48, 16)),
    memory_configs=("degan-cpu",),
    memory_in_memory_path=True,
    train_steps=1,
    paper_train_steps=1,
    train_overrides=("train.batch_size=2", "data.hr_crop=16"),
    synthetic_data=True,
)


@dataclass(frozen=True)
class Variant:
    """How the generator runs: memory format and autocast."""

    name: str
    channels_last: bool = False
    bf16: bool = False


FP32 = Variant("fp32")
CHANNELS_LAST = Variant("fp32 channels_last", channels_last=True)
BF16 = Variant("bf16 autocast", bf16=True)


# --------------------------------------------------------------------------- machine


def cpu_model() -> str:
    """The ``model name`` line of /proc/cpuinfo (or the platform's processor string)."""
    with contextlib.suppress(OSError):
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        if match:
            return match.group(1).strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    with contextlib.suppress(OSError):
        match = re.search(r"^flags\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        if match:
            return set(match.group(1).split())
    return set()


def bf16_instructions() -> list[str]:
    """The CPU's bf16 instruction sets (empty: bf16 is emulated, and slow)."""
    return sorted(cpu_flags() & set(BF16_FLAGS))


def usable_cpus() -> int:
    with contextlib.suppress(AttributeError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "bf16_instructions": bf16_instructions(),
        "python": platform.python_version(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


# --------------------------------------------------------------------------- timing and memory helpers


def sig(value: float, digits: int = 4) -> float:
    """``value`` rounded to ``digits`` significant digits (JSON stays readable, tiny times stay > 0)."""
    return float(f"{value:.{digits}g}")


def log(message: str) -> None:
    """Progress on stderr (the tables go to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], object]) -> float:
    tic = time.perf_counter()
    fn()
    return time.perf_counter() - tic


def repeat_timed(fn: Callable[[], object], repeats: int, budget: float = float("inf")) -> list[float]:
    """Seconds of up to ``repeats`` calls; no new call once the calls so far took ``budget`` s."""
    times: list[float] = []
    while len(times) < repeats and sum(times) < budget:
        times.append(timed(fn))
    return times


def rss_kib(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in KiB, from /proc/self/status."""
    with contextlib.suppress(OSError):
        match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
        if match:
            return int(match.group(1))
    return 0


def reset_peak_rss() -> bool:
    """Set this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def textured_scene(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture, (height, width, 3) uint8 (writable), deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(height // 8, 2), max(width // 8, 2), 3), dtype=np.uint8)
    return np.array(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))


def textured_image(side: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture, (side, side, 3) uint8 (writable)."""
    return textured_scene(side, side, seed)


def speed_row(
    method: str, variant: str, image: np.ndarray, times: list[float], peak_kib: int | None, note: str = ""
) -> dict:
    """One inference result: output megapixels per second from the median time."""
    h, w = image.shape[:2]
    median = statistics.median(times)
    return {
        "method": method,
        "variant": variant,
        "lr": [w, h],
        "output": [w * SCALE, h * SCALE],
        "runs": len(times),
        "seconds": sig(median),
        "seconds_all": [sig(t) for t in times],
        "mpix_per_s": sig(h * w * SCALE * SCALE / 1e6 / median),
        "peak_rss_mib": None if peak_kib is None else round(peak_kib / 1024, 1),
        "note": note,
    }


# --------------------------------------------------------------------------- 1. inference


def make_resolver(name: str, settings: Settings, variant: Variant = FP32) -> SuperResolver:
    """A random-weight resolver running ``variant`` the way users do (``--precision bf16`` is the
    pipeline's own autocast: an outer one would be switched off inside it)."""
    torch.manual_seed(0)
    return SuperResolver.from_config(
        load_config(name)["model"] | {"scale": SCALE},
        device="cpu",
        tile=settings.tile,
        overlap=settings.overlap,
        batch_size=settings.batch_size,
        channels_last=variant.channels_last,
        bf16=variant.bf16,
        name=name,
    )


def measure_tiled_sr(
    sr: SuperResolver, image: np.ndarray, settings: Settings
) -> tuple[list[float], int | None]:
    """Seconds of ``sr(image)`` (the real tiled path) after one warm-up on the first tile stripe
    (the same tensor shapes as every later stripe), and the peak RSS (KiB) of the timed runs."""
    sr(image[: sr.tile])
    can_reset = reset_peak_rss()
    times = repeat_timed(lambda: sr(image), settings.repeats, settings.budget)
    return times, rss_kib("VmHWM") if can_reset else None


DEGAN_VARIANTS = (FP32, CHANNELS_LAST, BF16)


def bf16_input(image: np.ndarray, settings: Settings) -> tuple[np.ndarray, str]:
    """The image for bf16 and a note: the full image with bf16 instructions, else a small one."""
    instructions = bf16_instructions()
    if instructions:
        return image, f"bf16 instructions: {', '.join(instructions)}; output quality not checked"
    small = textured_image(settings.bf16_small_size, seed=1)
    return small, "no bf16 instructions (emulated): not recommended on this CPU"


def measure_degan(name: str, image: np.ndarray, settings: Settings) -> list[dict]:
    """Every variant of one generator config on ``image`` (bf16 maybe on a smaller one)."""
    rows = []
    for variant in DEGAN_VARIANTS:
        sr = make_resolver(name, settings, variant)
        array, note = bf16_input(image, settings) if variant.bf16 else (image, "")
        log(f"inference {name} {variant.name} on {array.shape[1]}x{array.shape[0]} LR")
        times, peak = measure_tiled_sr(sr, array, settings)
        rows.append(speed_row(name, variant.name, array, times, peak, note))
        del sr
    return rows


def measure_pillow_bicubic(image: np.ndarray, repeats: int) -> dict:
    pil = Image.fromarray(image)
    bicubic_upscale(pil, SCALE)
    times = repeat_timed(lambda: np.asarray(bicubic_upscale(pil, SCALE)), repeats)
    return speed_row("bicubic", "Pillow", image, times, None, "rsgen.data.degradation.bicubic_upscale")


def measure_torch_bicubic(image: np.ndarray, repeats: int) -> dict:
    """uint8 HWC -> float -> F.interpolate(bicubic) -> uint8 HWC, like the SR pipeline's ends."""

    def run() -> np.ndarray:
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
        y = F.interpolate(x, scale_factor=SCALE, mode="bicubic", align_corners=False)
        return y.clamp_(0, 255).round_().to(torch.uint8)[0].permute(1, 2, 0).contiguous().numpy()

    run()
    return speed_row("bicubic", "torch F.interpolate", image, repeat_timed(run, repeats), None, "fp32")


def bench_inference(settings: Settings) -> dict:
    image = textured_image(settings.lr_size)
    rows = [row for name in SR_CONFIGS for row in measure_degan(name, image, settings)]
    baseline_repeats = max(settings.repeats, 5)
    rows += [measure_pillow_bicubic(image, baseline_repeats), measure_torch_bicubic(image, baseline_repeats)]
    return {
        "scale": SCALE,
        "tile": settings.tile,
        "overlap": settings.overlap,
        "batch_size": settings.batch_size,
        "repeats": settings.repeats,
        "budget_s": settings.budget,
        "threads": torch.get_num_threads(),
        "rows": rows,
    }


# --------------------------------------------------------------------------- 2. peak memory


def write_scene(path: Path, width: int, height: int) -> Path:
    """A georeferenced, tiled, deflated RGB uint8 GeoTIFF of ``width`` x ``height`` px."""
    import rasterio
    from rasterio.transform import from_origin

    array = np.moveaxis(textured_scene(width, height, seed=2), -1, 0)
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": from_origin(500000.0, 4600000.0, 2.0, 2.0),
        "tiled": True,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
    return path


def child_work(job: dict) -> Callable[[], object]:
    """The function a memory job times: a tiled file, a whole image in memory, or bicubic."""
    from rsgen.io import read_rgb_uint8, write_rgb_uint8

    src, dst = job["src"], job["dst"]
    if job["kind"] == "bicubic":
        return lambda: write_rgb_uint8(
            dst, np.asarray(bicubic_upscale(Image.fromarray(read_rgb_uint8(src)), SCALE)), like=src
        )
    settings = replace(DEFAULT, tile=job["tile"], overlap=job["overlap"], batch_size=job["batch_size"])
    sr = make_resolver(job["config"], settings)
    if job["kind"] == "degan-file":
        return lambda: sr.upscale_file(src, dst, progress=False)
    return lambda: write_rgb_uint8(dst, sr(read_rgb_uint8(src)), like=src)


def child_job(job: dict) -> dict:
    """Run one memory job in this (fresh) process; return its time and memory.

    Peak RSS is VmHWM: ``ru_maxrss`` would also count the parent's pages, which a process
    started by fork/vfork + exec inherits in its maximum.
    """
    torch.set_num_threads(job["threads"])
    work = child_work(job)
    start_kib = rss_kib("VmRSS")
    seconds = timed(work)
    return {"seconds": seconds, "peak_rss_kib": rss_kib("VmHWM"), "start_rss_kib": start_kib}


def run_child(job: dict) -> dict:
    """Run ``child_job(job)`` in a fresh interpreter, so its peak memory is its own.

    A failed child (e.g. killed for memory) gives ``{"error": ...}`` instead of stopping the run.
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(job)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        reason = "killed (out of memory?)" if result.returncode == -9 else f"exit {result.returncode}"
        tail = result.stderr.strip().splitlines()[-1:] or [""]
        log(f"memory job failed: {reason} {tail[0]}")
        return {"error": f"{reason} {tail[0]}".strip()}
    return json.loads(result.stdout.strip().splitlines()[-1])


def scene_shape(width: int, height: int) -> str:
    """``square``, ``tall`` (higher than wide) or ``wide``."""
    return "square" if width == height else "tall" if height > width else "wide"


def scene_size(width: int, height: int) -> dict:
    """LR and output size of one memory scene, its shape, and the whole output's array size."""
    pixels = width * SCALE * height * SCALE
    return {
        "lr": [width, height],
        "output": [width * SCALE, height * SCALE],
        "shape": scene_shape(width, height),
        "output_array_mib": {"uint8": sig(pixels * 3 / MIB), "float32": sig(pixels * 3 * 4 / MIB)},
    }


def memory_row(method: str, path: str, variant: str, size: dict, measured: dict, note: str) -> dict:
    """One memory result; ``size`` is the scene's ``scene_size``."""
    failed = "error" in measured
    return {
        "method": method,
        "path": path,
        "variant": variant,
        **size,
        "peak_rss_mib": None if failed else round(measured["peak_rss_kib"] / 1024, 1),
        "start_rss_mib": None if failed else round(measured["start_rss_kib"] / 1024, 1),
        "seconds": None if failed else sig(measured["seconds"]),
        "note": f"FAILED: {measured['error']}" if failed else note,
        **({"error": measured["error"]} if failed else {}),
    }


def memory_jobs(settings: Settings) -> Iterator[tuple[str, str, str, dict, str]]:
    """(method, path, variant, job, note) of every memory measurement."""
    options = {"tile": settings.tile, "overlap": settings.overlap, "batch_size": settings.batch_size}
    streamed = "upscale_file (tiled, streamed)"
    for name in settings.memory_configs:
        job = {"kind": "degan-file", "config": name, **options}
        yield name, streamed, FP32.name, job, ""
    if settings.memory_in_memory_path:
        job = {"kind": "degan-array", "config": "degan-cpu", **options}
        note = "whole LR + float32 output rows + uint8 output in memory"
        yield "degan-cpu", "SuperResolver(array) (in memory)", FP32.name, job, note
    note = "read, resize, write the whole image"
    yield "bicubic", "Pillow, whole image", "", {"kind": "bicubic"}, note


def memory_rows_of_scene(settings: Settings, folder: Path, width: int, height: int) -> list[dict]:
    """Write one ``width`` x ``height`` scene into ``folder``; run every memory job on it."""
    size = scene_size(width, height)
    src = write_scene(folder / f"scene-{width}x{height}.tif", width, height)
    rows = []
    for i, (method, path, variant, job, note) in enumerate(memory_jobs(settings)):
        files = {"src": str(src), "dst": str(folder / f"out-{width}x{height}-{i}.tif")}
        log(f"memory {width}x{height} {method} {path} {variant}")
        measured = run_child({**job, **files, "threads": torch.get_num_threads()})
        Path(files["dst"]).unlink(missing_ok=True)  # large outputs: keep the temporary folder small
        rows.append(memory_row(method, path, variant, size, measured, note))
    src.unlink()
    return rows


def bench_memory(settings: Settings) -> dict:
    """Every memory job on a scene of each ``settings.memory_lr_sizes`` (square, tall, wide)."""
    with tempfile.TemporaryDirectory(prefix="rsgen-bench-") as tmp:
        rows = [
            row
            for width, height in settings.memory_lr_sizes
            for row in memory_rows_of_scene(settings, Path(tmp), width, height)
        ]
    return {
        "scale": SCALE,
        "tile": settings.tile,
        "batch_size": settings.batch_size,
        "sizes": [scene_size(width, height) for width, height in settings.memory_lr_sizes],
        "rows": rows,
    }


# --------------------------------------------------------------------------- 3. training


def shared_data_root() -> Path:
    return Path(os.environ.get("RSGEN_DATA", REPO.parent / "shared" / "data"))


def write_synthetic_images(folder: Path, count: int, side: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(textured_image(side, seed=10 + i)).save(folder / f"synthetic{i}.png")
    return folder


def training_config(name: str, scale: int, settings: Settings, synthetic: Path | None) -> dict:
    """The config's batch size and crop; the data folders replaced by ``synthetic`` when given."""
    config = load_config(name, [*settings.train_overrides, f"model.scale={scale}"])
    if synthetic is not None:
        config["data"] |= {"root": None, "train": [str(synthetic)], "val": str(synthetic)}
    else:
        config["data"]["root"] = str(shared_data_root())
    return config


def shared_data_present(name: str) -> bool:
    data = load_config(name)["data"]
    root = shared_data_root()
    return all((root / p).is_dir() for p in [*data["train"], data["val"]])


def measure_train_steps(task: Any, first_step: int, steps: int) -> list[float]:
    """Seconds of ``steps`` training steps after one untimed step, starting at ``first_step``."""
    from rsgen.train.loop import step_seed

    def step(number: int) -> None:
        torch.manual_seed(step_seed(0, 0, number))
        task.train_step(number)

    step(first_step)
    return [timed(lambda n=n: step(n)) for n in range(first_step + 1, first_step + 1 + steps)]


def training_rows(
    name: str, scale: int, steps: int, settings: Settings, synthetic: Path | None
) -> list[dict]:
    """Warm-up (content loss) and GAN step speed of one config at one scale."""
    from rsgen.train.distributed import DistContext
    from rsgen.train.tasks import build_task

    log(f"training {name} x{scale}")
    config = training_config(name, scale, settings, synthetic)
    torch.manual_seed(0)
    task = build_task(config, DistContext())
    rows = []
    for phase, first in (("warmup", 0), ("gan", task.warmup_steps)):
        median = statistics.median(measure_train_steps(task, first, steps))
        batch = task.batch_size
        rows.append(
            {
                "config": name,
                "scale": scale,
                "phase": phase,
                "batch_size": batch,
                "hr_crop": int(config["data"]["hr_crop"]),
                "steps": steps,
                "sec_per_step": sig(median),
                "it_per_s": sig(1 / median),
                "images_per_s": sig(batch / median),
            }
        )
    return rows


def bench_training(settings: Settings) -> dict:
    runs = [("degan-cpu", 4, settings.train_steps), ("degan-cpu", 2, settings.train_steps)]
    runs.append(("degan-paper", 4, settings.paper_train_steps))
    use_synthetic = settings.synthetic_data or not all(shared_data_present(n) for n, _, _ in runs)
    with tempfile.TemporaryDirectory(prefix="rsgen-bench-data-") as tmp:
        synthetic = write_synthetic_images(Path(tmp), 4, 160) if use_synthetic else None
        rows = [
            row
            for name, scale, steps in runs
            for row in training_rows(name, scale, steps, settings, synthetic)
        ]
    data = "synthetic (4 images, 160x160)" if use_synthetic else f"shared data under {shared_data_root()}"
    return {"data": data, "threads": torch.get_num_threads(), "rows": rows}


# --------------------------------------------------------------------------- output


def size_cell(row: dict) -> str:
    return f"{row['lr'][0]}x{row['lr'][1]} -> {row['output'][0]}x{row['output'][1]}"


def optional_mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


INFERENCE_COLUMNS = [
    ("method", "method"),
    ("variant", "variant"),
    ("LR -> output", size_cell),
    ("runs", "runs"),
    ("s (median)", lambda r: f"{r['seconds']:.4g}"),
    ("output MP/s", lambda r: f"{r['mpix_per_s']:.4g}"),
    ("peak RSS MiB", lambda r: optional_mib(r["peak_rss_mib"])),
    ("note", "note"),
]
MEMORY_COLUMNS = [
    ("method", "method"),
    ("path", "path"),
    ("variant", "variant"),
    ("shape", "shape"),
    ("LR -> output", size_cell),
    ("output array MiB (uint8)", lambda r: f"{r['output_array_mib']['uint8']:.3g}"),
    ("peak RSS MiB", lambda r: optional_mib(r["peak_rss_mib"])),
    ("RSS before MiB", lambda r: optional_mib(r["start_rss_mib"])),
    ("s", lambda r: "-" if r["seconds"] is None else f"{r['seconds']:.4g}"),
    ("note", "note"),
]
TRAINING_COLUMNS = [
    ("config", "config"),
    ("scale", lambda r: f"x{r['scale']}"),
    ("phase", "phase"),
    ("batch", "batch_size"),
    ("HR crop", "hr_crop"),
    ("timed steps", "steps"),
    ("s/step", lambda r: f"{r['sec_per_step']:.4g}"),
    ("it/s", lambda r: f"{r['it_per_s']:.4g}"),
    ("images/s", lambda r: f"{r['images_per_s']:.4g}"),
]


def cells(columns: list, rows: list[dict]) -> list[list[str]]:
    return [[str(get(r) if callable(get) else r[get]) for _, get in columns] for r in rows]


def text_table(columns: list, rows: list[dict]) -> str:
    body = [[name for name, _ in columns], *cells(columns, rows)]
    widths = [max(len(line[i]) for line in body) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(columns: list, rows: list[dict]) -> str:
    lines = ["| " + " | ".join(name for name, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in cells(columns, rows)]
    return "\n".join(lines)


def header_line(results: dict) -> str:
    m = results["machine"]
    bf16 = ", ".join(m["bf16_instructions"]) or "none"
    return (
        f"Machine: {m['cpu']}, {m['usable_cpus']} usable CPUs ({m['logical_cpus']} logical), "
        f"torch {m['torch']}, threads: {m['threads']}, bf16 instructions: {bf16}, "
        f"load average at start {m['load_average_1min']}. Command: `{results['command']}`"
    )


def section_titles(results: dict) -> dict[str, str]:
    titles = {}
    if "inference" in results:
        inf = results["inference"]
        titles["inference"] = (
            f"x{SCALE} inference, random weights, tiled (tile {inf['tile']}, overlap {inf['overlap']}, "
            f"batch {inf['batch_size']}), threads: {inf['threads']}, median of up to {inf['repeats']} runs "
            f"after a warm-up on one tile stripe"
        )
    if "memory" in results:
        mem = results["memory"]
        shapes = ", ".join(dict.fromkeys(size["shape"] for size in mem["sizes"]))
        titles["memory"] = (
            f"Peak resident memory (VmHWM) of a fresh process, x{SCALE} GeoTIFFs ({shapes}), "
            f"tile {mem['tile']}, batch {mem['batch_size']} (output array: the whole output held as "
            f"one uint8 array; float32 is 4x)"
        )
    if "training" in results:
        titles["training"] = (
            f"Training steps ({results['training']['data']}, threads: {results['training']['threads']})"
        )
    return titles


SECTION_COLUMNS = {"inference": INFERENCE_COLUMNS, "memory": MEMORY_COLUMNS, "training": TRAINING_COLUMNS}


def render_text(results: dict) -> str:
    parts = [header_line(results)]
    for key, title in section_titles(results).items():
        parts += ["", title, text_table(SECTION_COLUMNS[key], results[key]["rows"])]
    return "\n".join(parts)


def render_markdown(results: dict) -> str:
    parts = [header_line(results)]
    for key, title in section_titles(results).items():
        parts += ["", f"**{title}**", "", markdown_table(SECTION_COLUMNS[key], results[key]["rows"])]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- main


SECTIONS = ("inference", "memory", "training")


def memory_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """``"250x250,250x2000"`` -> ``((250, 250), (250, 2000))``: LR (width, height) pairs."""
    sizes = []
    for item in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", item)
        if not match or min(int(match.group(1)), int(match.group(2))) < 1:
            raise argparse.ArgumentTypeError(
                f"bad size {item.strip()!r} in {text!r}: expected WIDTHxHEIGHT of positive integers, "
                "comma-separated, e.g. 250x250,250x2000"
            )
        sizes.append((int(match.group(1)), int(match.group(2))))
    return tuple(sizes)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="tiny sizes, 1 thread: checks the script, numbers mean nothing")
    add("--full", action="store_true", help="also degan-paper and the in-memory path in the memory test")
    add("--json", type=Path, help="write the results as JSON here")
    add("--markdown", type=Path, help="write the tables as Markdown here")
    add("--threads", type=int, help="torch intra-op threads (default: torch's choice; --quick: 1)")
    add(
        "--tile",
        type=int,
        help="LR tile side (default 64: SuperResolver's x4 default)",
    )
    add("--batch-size", type=int, help="tiles per forward pass (default 4)")
    add("--size", type=int, help="LR side of the inference image (default 512: 2048x2048 output)")
    add("--repeats", type=int, help="timed runs per DEGAN variant, at most (default 3)")
    add("--budget", type=float, help="no new timed run once a variant's runs took this many s (default 60)")
    add(
        "--memory-sizes",
        type=memory_sizes,
        metavar="WxH,...",
        help="LR scenes of the memory test, e.g. 250x250,500x500,250x2000 (output = 4x; default: "
        + ",".join(f"{w}x{h}" for w, h in DEFAULT.memory_lr_sizes)
        + ")",
    )
    add("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="what to measure")
    add("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> Settings:
    settings = QUICK if args.quick else DEFAULT
    if args.full:
        configs = tuple(dict.fromkeys([*settings.memory_configs, "degan-paper"]))
        settings = replace(settings, memory_configs=configs, memory_in_memory_path=True)
    names = {
        "size": "lr_size",
        "tile": "tile",
        "batch_size": "batch_size",
        "repeats": "repeats",
        "budget": "budget",
        "memory_sizes": "memory_lr_sizes",
    }
    for option, field in names.items():
        value = getattr(args, option)
        if value is not None:
            settings = replace(settings, **{field: value})
    return settings


def write_json(results: dict, path: Path | None) -> None:
    if path is not None:
        path.write_text(json.dumps(results, indent=2) + "\n")


def run_benchmark(args: argparse.Namespace, argv: list[str]) -> dict:
    settings = settings_from_args(args)
    results: dict[str, Any] = {
        "command": shlex.join(["python", "benchmarks/bench_sr.py", *argv]),
        "mode": "quick" if args.quick else "full" if args.full else "default",
        "machine": machine_info(),
        "settings": asdict(settings),
    }
    if results["machine"]["load_average_1min"] > 0.5 * usable_cpus() and not args.quick:
        print(
            "warning: the machine is busy (load average above half the CPUs): timings are unreliable",
            file=sys.stderr,
        )
    benches = {"inference": bench_inference, "memory": bench_memory, "training": bench_training}
    for name in SECTIONS:
        if name in args.sections:
            tic = time.perf_counter()
            results[name] = benches[name](settings)
            results[name]["section_seconds"] = round(time.perf_counter() - tic, 1)
            write_json(results, args.json)  # keep what is done if a later section fails
    results["machine"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    threads = args.threads or (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    if args.child:
        print(json.dumps(child_job(json.loads(args.child))))
        return 0
    results = run_benchmark(args, argv)
    print(render_text(results))
    write_json(results, args.json)
    if args.markdown:
        args.markdown.write_text(render_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
