"""Single-image diffusion on this CPU: quality of the model against minutes of training, and
the time of sampling and of one text-guided edit.

Run it on an idle machine, from the repository root::

    python benchmarks/bench_single_image.py --out benchmarks/single-image-2026-12-07

One training run of the ``single-image-cpu`` config on one scene (resized to ``--size``),
stopped at each of ``--stages`` steps (``--max-steps``, then resumed: the learning-rate
schedule is the full run's). At each stage: the wall-clock minutes of training so far, the
validation denoising L1, the time to sample ``--variations`` images, their SIFID to the
scene (EfficientNet-Lite0 block 1, :mod:`rsgen.metrics.sifid`; lower is closer to the scene's
patch statistics) with the baseline of a 4x bicubic blur of the scene, and a contact sheet.
At the last stage one ROI edit is timed. Writes ``results.json``, ``results.md``,
``quality.png`` and ``stage-<steps>.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="../shared/data/scenes/forest.jpg")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--stages", type=int, nargs="+", default=[300, 600, 1200, 2400])
    parser.add_argument("--variations", type=int, default=4)
    parser.add_argument("--prompt", default="a fire in the forest")
    parser.add_argument("--roi", type=int, nargs=4, default=[64, 64, 128, 128])
    parser.add_argument(
        "--fine-steps",
        type=int,
        default=8,
        help="sampling steps per scale above the coarsest; 0: every timestep",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from rsgen.config import load_config
    from rsgen.metrics.sifid import sifid
    from rsgen.pipelines.editor import Editor, EditSettings
    from rsgen.train.loop import CHECKPOINT_NAME, run_training

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    scene = Image.open(args.image).convert("RGB").resize((args.size, args.size), Image.BICUBIC)
    scene_path = args.out / "scene.png"
    scene.save(scene_path)
    original = np.asarray(scene)
    blurred = np.asarray(scene.resize((args.size // 4,) * 2, Image.BICUBIC).resize(scene.size, Image.BICUBIC))

    config = load_config("single-image-cpu", [f"data.image={scene_path}", *args.overrides])
    config["train"]["steps"] = max(args.stages)
    config["train"]["eval_every"] = 0
    run_dir = args.out / "run"
    rows, trained = [], 0.0
    for stage in sorted(args.stages):
        tic = time.perf_counter()
        run_training(
            config,
            run_dir,
            resume=(run_dir / CHECKPOINT_NAME).is_file(),
            max_steps=stage,
            progress=False,
        )
        trained += time.perf_counter() - tic
        editor = Editor.from_pretrained(run_dir / "final", image=original, progress=False)
        tic = time.perf_counter()
        images, _ = editor.variations(args.variations, seed=0, steps=args.fine_steps or None)
        sample_seconds = (time.perf_counter() - tic) / args.variations
        scores = [sifid(original, np.asarray(image)) for image in images]
        val = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
        val_loss = [r["val_loss"] for r in val if "val_loss" in r][-1]
        rows.append(
            {
                "steps": stage,
                "train_minutes": round(trained / 60, 4),
                "val_loss": round(val_loss, 4),
                "sifid_mean": round(float(np.mean(scores)), 2),
                "sifid": [round(s, 2) for s in scores],
                "sample_seconds_per_image": round(sample_seconds, 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        sheet = Image.new("RGB", ((1 + len(images)) * args.size, args.size))
        for i, image in enumerate([scene, *images]):
            sheet.paste(image, (i * args.size, 0))
        sheet.save(args.out / f"stage-{stage}.png")

    tic = time.perf_counter()
    result = editor.edit(
        args.prompt, roi=tuple(args.roi), seed=0, settings=EditSettings(steps=args.fine_steps or None)
    )
    edit_seconds = time.perf_counter() - tic
    result.before_after().save(args.out / "edit.png")
    outside = ~result.changed
    summary = {
        "image": args.image,
        "size": args.size,
        "threads": args.threads,
        "fine_steps": args.fine_steps,
        "config": config,
        "stages": rows,
        "baseline_sifid_bicubic_x4": round(sifid(original, blurred), 2),
        "edit": {
            "prompt": args.prompt,
            "roi": args.roi,
            "seconds": round(edit_seconds, 1),
            "outside_pixels_changed": int((np.asarray(result.image)[outside] != original[outside]).sum()),
        },
        "torch": torch.__version__,
    }
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_markdown(args.out / "results.md", summary)
    plot(args.out / "quality.png", rows, summary["baseline_sifid_bicubic_x4"])


def write_markdown(path: Path, summary: dict) -> None:
    lines = [
        f"Single-image diffusion on `{summary['image']}` at {summary['size']} px, "
        f"{summary['threads']} threads, {summary['fine_steps'] or 'all'} steps per fine scale.",
        "",
        "| steps | training (min) | val L1 | SIFID of variations (mean) | sampling (s/image) |",
        "|---|---|---|---|---|",
    ]
    for r in summary["stages"]:
        lines.append(
            f"| {r['steps']} | {r['train_minutes']} | {r['val_loss']} | {r['sifid_mean']} | "
            f"{r['sample_seconds_per_image']} |"
        )
    edit = summary["edit"]
    lines += [
        "",
        f"Baseline: SIFID of the scene blurred by 4x bicubic = {summary['baseline_sifid_bicubic_x4']}.",
        f"One ROI edit ({edit['prompt']!r}, ROI {edit['roi']}): {edit['seconds']} s; "
        f"pixels outside the ROI + 8 px band changed: {edit['outside_pixels_changed']}.",
    ]
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, rows: list[dict], baseline: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([r["train_minutes"] for r in rows], [r["sifid_mean"] for r in rows], "o-", label="variations")
    ax.axhline(baseline, color="gray", linestyle="--", label="scene blurred 4x (bicubic)")
    ax.set_xlabel("training minutes (2 CPU threads)")
    ax.set_ylabel("SIFID to the scene (lower is better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
