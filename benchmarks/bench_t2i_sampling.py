"""CPU benchmark of RSVQ-Diffusion text-to-image: sampling latency, training speed, peak memory.

Run it on an idle machine, from the repository root::

    python benchmarks/bench_t2i_sampling.py --json t2i.json --markdown t2i.md
    python benchmarks/bench_t2i_sampling.py --model runs/rsvq/pipeline      # a model folder
    python benchmarks/bench_t2i_sampling.py --quick                         # smoke test, seconds

**Sampling**: seconds per image of :meth:`TextToImage.generate_batch` (what ``rsgen eval t2i``
calls; ``rsgen generate -n 8`` runs the same batch) at 100, 50 and 25 steps, batch 1 and 8,
guidance 5 (conditional and null-context passes in one batch), MiniLM text encoding and VQ
decoding included. The model is ``--model``, else the shipped ``rsvq-cpu`` if present, else
random weights at the sizes of ``rsgen/configs/t2i/rsvq_cpu.yaml`` and ``vq_tokenizer_cpu.yaml``
(speed does not depend on the weights). Each case runs in a fresh child process: one untimed
1-step warm-up call at the same batch, then up to ``--repeats`` timed calls (median); the VQ
decode of a batch of random tokens is also timed alone. **Training**: steps/s of the ``rsvq``
task's own ``train_step`` (``build_task`` on ``rsvq-cpu``: batch 16, the config's model and
``bf16: auto``) on a synthetic caption set tokenized by a random tokenizer of the config size,
also in a child process. **Memory**: each child's peak resident set (``VmHWM``) after the
timed work, and its resident set before it (Python, torch, the models).

``--quick`` uses a tiny random model (16 px, T = 10: 10 / 5 / 2 steps, batch 1 and 2), 1 thread
and one timed run: it checks that the script works, its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
for path in (REPO, Path(__file__).resolve().parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch  # noqa: E402
from bench_sr import (  # noqa: E402
    header_line,
    log,
    machine_info,
    markdown_table,
    repeat_timed,
    reset_peak_rss,
    rss_kib,
    sig,
    text_table,
    textured_image,
    usable_cpus,
    write_json,
)
from PIL import Image  # noqa: E402

from rsgen.config import load_config  # noqa: E402
from rsgen.errors import RsgenError  # noqa: E402

STEPS, BATCHES = (100, 50, 25), (1, 8)
QUICK_STEPS, QUICK_BATCHES = (10, 5, 2), (1, 2)
PROMPTS = [
    "many buildings and green trees are around a playground",
    "a river crosses a dense forest",
    "several planes are parked near the terminal of an airport",
    "some white storage tanks stand beside a road",
    "a bridge goes over a wide river with boats",
    "many cars are parked in a parking lot",
    "a beach with white waves and yellow sand",
    "a large farmland is divided into green and brown fields",
]
TINY_TOKENIZER = {"name": "vq_tokenizer", "channels": [8, 16], "codebook_size": 16, "code_dim": 8}
TINY_MODEL = {"num_classes": 16, "grid": [8, 8], "width": 32, "depth": 1, "heads": 2, "window": 4}
TINY_SCHEDULER = {"num_classes": 16, "num_train_timesteps": 10}
MIB_PER_KIB = 1 / 1024


# --------------------------------------------------------------------------- the model


def component_configs(quick: bool) -> tuple[dict, dict, dict]:
    """(tokenizer, transformer, scheduler) configs: the CPU configs' sizes, or tiny ones."""
    tokenizer = load_config("vq-tokenizer-cpu")["model"]
    config = load_config("rsvq-cpu")
    model, scheduler = config["model"], config["scheduler"]
    if quick:
        tokenizer = TINY_TOKENIZER
        model = {**model, **TINY_MODEL, "num_timesteps": 10}
        scheduler = {**scheduler, **TINY_SCHEDULER}
    return tokenizer, model, scheduler


def random_model_folder(folder: Path, quick: bool) -> Path:
    """A random-weight pipeline folder of the CPU config sizes (tiny with ``quick``)."""
    from rsgen.diffusion import build_scheduler
    from rsgen.models.diffusion_transformer import DiffusionTransformer
    from rsgen.models.vq_tokenizer import VQTokenizer
    from rsgen.pipelines.text_to_image import TextToImage

    tokenizer, model, scheduler = component_configs(quick)
    torch.manual_seed(0)
    pipe = TextToImage(
        VQTokenizer.from_config(tokenizer),
        DiffusionTransformer.from_config(model),
        build_scheduler(scheduler),
        device="cpu",
        progress=False,
    )
    return pipe.save_pretrained(folder)


def model_under_test(args: argparse.Namespace, tmp: Path) -> tuple[Path, str]:
    """The pipeline folder to time and how the report names it."""
    from rsgen.pipelines.text_to_image import DEFAULT_MODEL, check_pipeline_folder
    from rsgen.shipped import WEIGHTS_DIR

    if args.model:
        path = Path(args.model)
        check_pipeline_folder(path)
        return path, str(path)
    if args.quick:
        return random_model_folder(tmp / "tiny", quick=True), "tiny random model (--quick)"
    if (WEIGHTS_DIR / DEFAULT_MODEL).is_dir():
        return WEIGHTS_DIR / DEFAULT_MODEL, f"{DEFAULT_MODEL} (shipped)"
    return random_model_folder(tmp / "random", quick=False), "random weights, rsvq-cpu config sizes"


# --------------------------------------------------------------------------- child jobs


def sample_job(job: dict) -> dict:
    """Time ``generate_batch`` of ``job["batch"]`` prompts at ``job["steps"]`` steps (one warm-up),
    and the VQ decode of a batch alone."""
    from rsgen.pipelines.text_to_image import TextToImage

    pipe = TextToImage.from_pretrained(job["folder"], device="cpu", bf16=job["bf16"], progress=False)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(job["batch"])]
    pipe.generate_batch(prompts, seed=0, steps=1)  # MiniLM loaded, buffers allocated
    start_kib = rss_kib("VmRSS")
    can_reset = reset_peak_rss()
    times = repeat_timed(
        lambda: pipe.generate_batch(prompts, seed=0, steps=job["steps"]), job["repeats"], job["budget"]
    )
    peak_kib = rss_kib("VmHWM") if can_reset else None
    tokens = torch.randint(0, pipe.tokenizer.codebook_size, (job["batch"], *pipe.grid))

    def decode() -> None:
        with torch.inference_mode(), pipe.autocast():
            pipe.tokenizer.decode(tokens)

    decode()
    decode_s = statistics.median(repeat_timed(decode, 3))
    return {
        "seconds": statistics.median(times),
        "runs": len(times),
        "decode_seconds": decode_s,
        "size": list(pipe.image_size),
        "peak_kib": peak_kib,
        "start_kib": start_kib,
    }


def synthetic_caption_set(folder: Path, count: int, side: int) -> Path:
    """``count`` textured images of ``side`` px in the captions.jsonl layout, all ``train``."""
    (folder / "images").mkdir(parents=True)
    lines = []
    for i in range(count):
        scene = ("forest", "river")[i % 2]
        Image.fromarray(textured_image(side, seed=i)).save(folder / "images" / f"{scene}_{i}.png")
        captions = [PROMPTS[i % len(PROMPTS)], PROMPTS[(i + 1) % len(PROMPTS)]]
        lines.append(
            json.dumps({"file": f"{scene}_{i}.png", "scene": scene, "split": "train", "captions": captions})
        )
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def training_config(tmp: Path, quick: bool) -> dict:
    """``rsvq-cpu`` on a synthetic caption set and a random tokenizer of its size (tiny with
    ``quick``); ``views: 0`` (tokenization is not timed, and views do not change a step)."""
    from rsgen.models.vq_tokenizer import VQTokenizer

    tokenizer, model, scheduler = component_configs(quick)
    config = load_config("rsvq-cpu")
    torch.manual_seed(0)
    config["tokenizer"] = str(VQTokenizer.from_config(tokenizer).save_pretrained(tmp / "tokenizer"))
    config["model"], config["scheduler"] = model, scheduler
    size = 16 if quick else int(config["data"]["image_size"])
    batch = 2 if quick else int(config["train"]["batch_size"])
    count = 2 * batch + 4  # the 0.1 hold-out leaves more than a batch to train on
    data = synthetic_caption_set(tmp / "data", count, int(size * 1.125))
    config["data"] |= {"dir": str(data), "root": None, "image_size": size, "load_size": int(size * 1.125)}
    config["data"]["val_images"] = 2
    config["train"] |= {"views": 0, "batch_size": batch}
    return config


def train_job(job: dict) -> dict:
    """Median seconds of the ``rsvq`` task's ``train_step`` (after one untimed step)."""
    from rsgen.train.distributed import DistContext
    from rsgen.train.tasks import build_task

    with tempfile.TemporaryDirectory(prefix="rsgen-bench-t2i-") as tmp:
        os.environ["RSGEN_CACHE"] = str(Path(tmp) / "cache")
        config = training_config(Path(tmp), job["quick"])
        task = build_task(config, DistContext())
        task.train_step(0)
        start_kib = rss_kib("VmRSS")
        can_reset = reset_peak_rss()
        times = [timed_step(task, step) for step in range(1, 1 + job["steps"])]
        return {
            "seconds": statistics.median(times),
            "batch_size": task.batch_size,
            "bf16": bool(task.bf16),
            "params": sum(p.numel() for p in task.model.parameters()),
            "model": {k: config["model"][k] for k in ("width", "depth", "heads", "grid", "window")},
            "peak_kib": rss_kib("VmHWM") if can_reset else None,
            "start_kib": start_kib,
        }


def timed_step(task: Any, step: int) -> float:
    tic = time.perf_counter()
    task.train_step(step)
    return time.perf_counter() - tic


def child_job(job: dict) -> dict:
    torch.set_num_threads(job["threads"])
    return sample_job(job) if job["kind"] == "sample" else train_job(job)


def run_child(job: dict) -> dict:
    """``child_job(job)`` in a fresh interpreter (its peak memory is its own); a failure gives
    ``{"error": ...}`` instead of stopping the run."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(job)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or [""])[-1]
        log(f"{job['kind']} job failed (exit {result.returncode}): {tail}")
        return {"error": f"exit {result.returncode}: {tail}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- sections


def mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib * MIB_PER_KIB, 1)


def sampling_row(steps: int, batch: int, measured: dict) -> dict:
    row: dict[str, Any] = {"steps": steps, "batch": batch}
    if "error" in measured:
        return {**row, "error": measured["error"]}
    seconds = measured["seconds"]
    return {
        **row,
        "size": measured["size"],
        "runs": measured["runs"],
        "seconds": sig(seconds),
        "seconds_per_image": sig(seconds / batch),
        "decode_seconds_per_image": sig(measured["decode_seconds"] / batch),
        "peak_rss_mib": mib(measured["peak_kib"]),
        "start_rss_mib": mib(measured["start_kib"]),
    }


def bench_sampling(args: argparse.Namespace, folder: Path, threads: int) -> dict:
    rows = []
    for batch in args.batches:
        for steps in args.steps:
            log(f"sampling {steps} steps, batch {batch}")
            job = {"kind": "sample", "folder": str(folder), "steps": steps, "batch": batch, "bf16": args.bf16}
            job |= {"repeats": args.repeats, "budget": args.budget, "threads": threads}
            rows.append(sampling_row(steps, batch, run_child(job)))
    return {"threads": threads, "bf16": args.bf16, "guidance": 5.0, "rows": rows}


def bench_training(args: argparse.Namespace, threads: int) -> dict:
    log("training steps of the rsvq task")
    steps = 1 if args.quick else args.train_steps
    measured = run_child({"kind": "train", "quick": args.quick, "steps": steps, "threads": threads})
    if "error" in measured:
        return {"threads": threads, "rows": [{"config": "rsvq-cpu", "error": measured["error"]}]}
    seconds = measured["seconds"]
    row = {
        "config": "rsvq-cpu" + (" (tiny, --quick)" if args.quick else ""),
        "params_m": sig(measured["params"] / 1e6, 3),
        "batch_size": measured["batch_size"],
        "bf16": measured["bf16"],
        "timed_steps": steps,
        "sec_per_step": sig(seconds),
        "steps_per_s": sig(1 / seconds),
        "images_per_s": sig(measured["batch_size"] / seconds),
        "peak_rss_mib": mib(measured["peak_kib"]),
        "start_rss_mib": mib(measured["start_kib"]),
    }
    return {"threads": threads, "model": measured["model"], "rows": [row]}


# --------------------------------------------------------------------------- output


def optional(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


MEMORY_COLUMNS = [
    ("peak RSS MiB", lambda r: optional(r.get("peak_rss_mib"), 5)),
    ("RSS before MiB", lambda r: optional(r.get("start_rss_mib"), 5)),
    ("note", lambda r: r.get("error", "")),
]
SAMPLING_COLUMNS = [
    ("steps", "steps"),
    ("batch", "batch"),
    ("runs", lambda r: r.get("runs", "-")),
    ("s / batch", lambda r: optional(r.get("seconds"))),
    ("s / image", lambda r: optional(r.get("seconds_per_image"))),
    ("VQ decode s / image", lambda r: optional(r.get("decode_seconds_per_image"))),
    *MEMORY_COLUMNS,
]
TRAINING_COLUMNS = [
    ("config", "config"),
    ("params (M)", lambda r: optional(r.get("params_m"))),
    ("batch", lambda r: r.get("batch_size", "-")),
    ("bf16", lambda r: r.get("bf16", "-")),
    ("s / step", lambda r: optional(r.get("sec_per_step"))),
    ("steps / s", lambda r: optional(r.get("steps_per_s"))),
    ("images / s", lambda r: optional(r.get("images_per_s"))),
    *MEMORY_COLUMNS,
]
COLUMNS = {"sampling": SAMPLING_COLUMNS, "training": TRAINING_COLUMNS}


def section_titles(results: dict) -> dict[str, str]:
    titles = {}
    if "sampling" in results:
        s = results["sampling"]
        precision = "bf16 autocast" if s["bf16"] else "fp32"
        titles["sampling"] = (
            f"Sampling, model: {results['model']}, guidance {s['guidance']}, {precision}, threads: "
            f"{s['threads']}; text encoding and VQ decode included; median of the timed runs"
        )
    if "training" in results:
        t = results["training"]
        titles["training"] = (
            f"Training steps of the rsvq task (synthetic captions, random tokenizer), model "
            f"{json.dumps(t.get('model', {}))}, threads: {t['threads']}"
        )
    return titles


def render(results: dict, markdown: bool) -> str:
    parts = [header_line(results)]
    for key, title in section_titles(results).items():
        table = (markdown_table if markdown else text_table)(COLUMNS[key], results[key]["rows"])
        parts += ["", f"**{title}**" if markdown else title, *([""] if markdown else []), table]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- main


SECTIONS = ("sampling", "training")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--model", help="text-to-image pipeline folder [default: shipped rsvq-cpu, else random weights]")
    add("--quick", action="store_true", help="tiny random model, 1 thread: checks the script works")
    add("--json", type=Path, help="write the results as JSON here")
    add("--markdown", type=Path, help="write the tables as Markdown here")
    add("--threads", type=int, help="torch threads [default: the usable CPUs; --quick: 1]")
    add("--bf16", action="store_true", help="sample under bf16 autocast (slow where bf16 is emulated)")
    add("--repeats", type=int, default=3, help="timed sampling runs per case, at most [default: 3]")
    add("--budget", type=float, default=120.0, help="no new timed run once a case took this many s")
    add("--steps", type=int, nargs="+", help="sampling steps per case [default: 100 50 25]")
    add("--batches", type=int, nargs="+", help="batch sizes [default: 1 8]")
    add("--train-steps", type=int, default=5, help="timed training steps [default: 5]")
    add("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="what to measure")
    add("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    args.steps = args.steps or list(QUICK_STEPS if args.quick else STEPS)
    args.batches = args.batches or list(QUICK_BATCHES if args.quick else BATCHES)
    if min(args.steps) < 1 or min(args.batches) < 1:
        parser.error("--steps and --batches must be positive")
    return args


def run_benchmark(args: argparse.Namespace, argv: list[str], threads: int) -> dict:
    results: dict[str, Any] = {
        "command": shlex.join(["python", "benchmarks/bench_t2i_sampling.py", *argv]),
        "mode": "quick" if args.quick else "default",
        "machine": machine_info(),
    }
    results["machine"]["threads"] = threads
    if results["machine"]["load_average_1min"] > 0.5 * usable_cpus() and not args.quick:
        print(
            "warning: the machine is busy (load average above half the CPUs): timings are unreliable",
            file=sys.stderr,
        )
    with tempfile.TemporaryDirectory(prefix="rsgen-bench-t2i-") as tmp:
        if "sampling" in args.sections:
            folder, results["model"] = model_under_test(args, Path(tmp))
            results["sampling"] = bench_sampling(args, folder, threads)
            write_json(results, args.json)  # keep what is done if a later section fails
        if "training" in args.sections:
            results["training"] = bench_training(args, threads)
    results["machine"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child_job(json.loads(args.child))))
        return 0
    threads = args.threads or (1 if args.quick else usable_cpus())
    try:
        results = run_benchmark(args, argv, threads)
    except RsgenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(render(results, markdown=False))
    write_json(results, args.json)
    if args.markdown:
        args.markdown.write_text(render(results, markdown=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
