#!/usr/bin/env python
"""Train degan-paper (PSNR phase) on one GPU inside a wall-clock budget.

A driver around rsgen's own pieces (config, generator, SRPairSampler, PSNR, save_pretrained)
for a borrowed GPU that is held for minutes, not hours:

- the learning rate follows a warm-up + cosine schedule over *wall-clock* time, so it
  reaches its floor exactly at ``--train-until`` however fast the machine turns out to be;
- batches are drawn by a thread pool ahead of the GPU (same sampler, same per-step RNG
  as ``rsgen train``: the LR/HR pairs are identical), pinned and copied asynchronously;
- it picks bf16 autocast or fp32 (TF32 on) and channels-last or not by timing a few
  steps of each at the start (``--amp auto --channels-last auto``);
- it validates on a held-out folder every ``--eval-every-s`` seconds and at the end, and
  exports ``best/`` (fp16 safetensors + config.json, the format of ``rsgen/weights``)
  whenever the validation gain over bicubic improves; ``final/`` at the end;
- ``log.jsonl`` has the records of ``rsgen train`` (``rsgen curves`` plots it) and
  ``summary.json`` the timings.

SIGTERM/SIGINT stop training after the current step; validation and export still run.
rasterio (imported by rsgen.io for GeoTIFF) is replaced by a small stand-in when it is not
installed: JPEG/PNG reading goes through Pillow and never touches it.

Run from a checkout (or a ``git archive`` snapshot) with the package importable::

    PYTHONPATH=. python tools/gpu/train_degan_paper.py --scale 4 --out runs/degan-paper-x4 \
        --data-root .gpu/data --train RSSCN7/train-fit AID-150 --val RSSCN7/train-holdout \
        --train-seconds 400
"""

from __future__ import annotations

import argparse
import collections
import copy
import enum
import json
import math
import os
import signal
import sys
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


def install_rasterio_stub(force: bool = False) -> bool:
    """Make ``import rasterio`` succeed without GDAL, for the Pillow-only read path."""
    if not force:
        try:
            import rasterio  # noqa: F401

            return False
        except ImportError:
            pass

    class RasterioError(Exception):
        pass

    class NotGeoreferencedWarning(UserWarning):
        pass

    class _Missing:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("rasterio is not installed here (stand-in module): no GeoTIFF I/O")

    class Affine(tuple):
        @classmethod
        def identity(cls) -> Affine:
            return cls((1.0, 0.0, 0.0, 0.0, 1.0, 0.0))

        @classmethod
        def scale(cls, *args: float) -> Affine:
            raise RuntimeError("rasterio is not installed here (stand-in module): no georeferencing")

    class Window:
        def __init__(self, col_off: int, row_off: int, width: int, height: int) -> None:
            self.col_off, self.row_off, self.width, self.height = col_off, row_off, width, height

        def toranges(self) -> tuple[tuple[int, int], tuple[int, int]]:
            return (
                (self.row_off, self.row_off + self.height),
                (self.col_off, self.col_off + self.width),
            )

    roles = ["undefined", "gray", "palette", "red", "green", "blue", "alpha"]
    contents: dict[str, dict[str, Any]] = {
        "control": {"GroundControlPoint": _Missing},
        "crs": {"CRS": _Missing},
        "enums": {
            "ColorInterp": enum.Enum("ColorInterp", {r: i for i, r in enumerate(roles)}),
            "Resampling": enum.Enum("Resampling", {"nearest": 0, "bilinear": 1, "cubic": 2}),
        },
        "errors": {"RasterioError": RasterioError, "NotGeoreferencedWarning": NotGeoreferencedWarning},
        "transform": {"Affine": Affine},
        "windows": {"Window": Window},
        "io": {"DatasetReader": _Missing, "DatasetWriter": _Missing},
    }
    root = types.ModuleType("rasterio")
    root.__path__ = []  # a package, so "from rasterio.x import y" works
    root.open = _Missing
    root.__rsgen_stub__ = True
    sys.modules["rasterio"] = root
    for name, attrs in contents.items():
        module = types.ModuleType(f"rasterio.{name}")
        for key, value in attrs.items():
            setattr(module, key, value)
        sys.modules[f"rasterio.{name}"] = module
        setattr(root, name, module)
    return True


STUBBED = install_rasterio_stub(force=os.environ.get("RSGEN_RASTERIO_STUB") == "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from rsgen.config import load_config  # noqa: E402
from rsgen.data.degradation import bicubic_downscale, bicubic_upscale, crop_to_multiple  # noqa: E402
from rsgen.data.sr_dataset import SRPairSampler  # noqa: E402

try:  # rsgen >= 52d8518 gives these one home each; before, sr_dataset held them
    from rsgen.data.images import image_to_tensor as pil_to_tensor  # noqa: E402
    from rsgen.data.images import tensor_to_image as tensor_to_uint8  # noqa: E402
    from rsgen.data.paths import resolve_data_path  # noqa: E402
except ImportError:
    from rsgen.data.sr_dataset import pil_to_tensor, resolve_data_path, tensor_to_uint8  # noqa: E402
from rsgen.io import list_images, read_rgb_uint8  # noqa: E402
from rsgen.metrics.image_quality import psnr  # noqa: E402
from rsgen.models import DEGANConfig, DEGANGenerator  # noqa: E402

try:  # rsgen <= 52d8518; later, models save themselves (PretrainedModel.save_pretrained)
    from rsgen.checkpoint import save_pretrained as _save_pretrained  # noqa: E402
except ImportError:
    _save_pretrained = None


def save_pretrained(model: torch.nn.Module, directory: Path, dtype: torch.dtype, extra: dict) -> None:
    """The model folder of rsgen/weights: config.json + model.safetensors in ``dtype``."""
    if _save_pretrained is not None:
        _save_pretrained(model, directory, dtype, extra)
    else:
        model.save_pretrained(directory, extra=extra, dtype=dtype)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="degan-paper", help="rsgen config name or YAML (model section used)")
    p.add_argument("--scale", type=int, required=True)
    p.add_argument("--out", type=Path, required=True, help="run folder (log.jsonl, best/, final/)")
    p.add_argument("--data-root", default=None, help="root of the data folders (default: rsgen's)")
    p.add_argument("--train", nargs="+", default=["RSSCN7/train", "AID-150"])
    p.add_argument("--val", default="RSSCN7/val", help="held-out folder for checkpoint selection")
    p.add_argument("--val-images", type=int, default=0, help="use this many val images (0: all)")
    p.add_argument("--crop", type=int, default=144, help="HR crop (AID-150 images are 150 px)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--min-lr-ratio", type=float, default=0.01)
    p.add_argument("--warmup-frac", type=float, default=0.04, help="of the training time")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip (0: off)")
    p.add_argument("--train-seconds", type=float, default=None, help="training budget from now")
    p.add_argument("--train-until", type=float, default=None, help="training deadline (epoch seconds)")
    p.add_argument("--max-steps", type=int, default=None, help="also stop after this many steps")
    p.add_argument("--eval-every-s", type=float, default=60.0)
    p.add_argument("--eval-batch", type=int, default=4)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--amp", choices=["auto", "bf16", "fp32"], default="auto")
    p.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--bench-steps", type=int, default=6, help="timed steps per variant in auto mode")
    p.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    p.add_argument("--threads", type=int, default=4, help="torch CPU threads")
    p.add_argument("--data-threads", type=int, default=4, help="batch-drawing threads")
    p.add_argument("--prefetch", type=int, default=8, help="batches drawn ahead")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], help="extra config override key=value")
    return p.parse_args(argv)


class Log:
    """``log.jsonl`` in the format of rsgen.train.loop (a ``time`` field first)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        record = {"time": round(time.time(), 1), **record}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def say(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


class Holdout:
    """Held-out images with their LR inputs and bicubic PSNRs, prepared once."""

    def __init__(self, folder: Path, scale: int, limit: int) -> None:
        files = list_images(folder)
        if limit and limit < len(files):
            stride = max(len(files) // limit, 1)
            files = files[::stride][:limit]
        self.files, self.scale = files, scale
        self.hr, self.lr, self.bicubic = [], [], []
        for path in files:
            hr = crop_to_multiple(Image.fromarray(read_rgb_uint8(path)), scale)
            lr = bicubic_downscale(hr, scale)
            self.hr.append(np.asarray(hr))
            self.lr.append(pil_to_tensor(lr))
            self.bicubic.append(psnr(np.asarray(bicubic_upscale(lr, scale)), self.hr[-1], crop_border=scale))

    @torch.no_grad()
    def evaluate(self, generator: torch.nn.Module, device: torch.device, batch: int) -> dict[str, float]:
        generator.eval()
        scores = []
        # Group by size so that equal-sized images run as one batch.
        order = sorted(range(len(self.lr)), key=lambda i: tuple(self.lr[i].shape))
        i = 0
        while i < len(order):
            shape = tuple(self.lr[order[i]].shape)
            group = [order[i]]
            while (
                len(group) < batch
                and i + len(group) < len(order)
                and tuple(self.lr[order[i + len(group)]].shape) == shape
            ):
                group.append(order[i + len(group)])
            x = torch.stack([self.lr[j] for j in group]).to(device)
            out = generator(x)
            for j, sr in zip(group, out, strict=True):
                scores.append((j, psnr(tensor_to_uint8(sr), self.hr[j], crop_border=self.scale)))
            i += len(group)
        generator.train()
        model = float(np.mean([s for _, s in sorted(scores)]))
        bicubic = float(np.mean(self.bicubic))
        return {"val_psnr": model, "val_psnr_bicubic": bicubic, "val_gain_db": model - bicubic}


def uint8_drawer(sampler: SRPairSampler):
    """``SRPairSampler.batch`` without its float conversion: the same crops, augmentation
    and Pillow bicubic LR (same RNG calls in the same order), returned as uint8 NHWC so that
    the float conversion runs on the GPU (same formula, bit-identical: see ``check_drawer``)."""

    def draw(step: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([sampler.seed, sampler.rank, step])
        c, lrs, hrs = sampler.hr_crop, [], []
        for _ in range(batch):
            image = sampler.images[rng.integers(len(sampler.images))]
            h, w = image.shape[:2]
            top, left = rng.integers(h - c + 1), rng.integers(w - c + 1)
            crop = image[top : top + c, left : left + c]
            if sampler.augment:
                crop = np.rot90(crop, k=int(rng.integers(4)))
                if rng.integers(2):
                    crop = crop[:, ::-1]
            hr = Image.fromarray(np.ascontiguousarray(crop))
            lrs.append(np.asarray(bicubic_downscale(hr, sampler.scale)))
            hrs.append(np.asarray(hr))
        return torch.from_numpy(np.stack(lrs)), torch.from_numpy(np.stack(hrs))

    return draw


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1] (rsgen's image_to_tensor, batched); floats pass."""
    if batch.dtype != torch.uint8:
        return batch
    return batch.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def check_drawer(sampler: SRPairSampler) -> bool:
    """True when the uint8 drawer reproduces SRPairSampler.batch exactly (steps 0 and 1)."""
    try:
        draw = uint8_drawer(sampler)
        for step in (0, 1):
            ref = sampler.batch(step, 3)
            got = draw(step, 3)
            if not all(torch.equal(to_float(g).contiguous(), r) for g, r in zip(got, ref, strict=True)):
                return False
        return True
    except Exception as exc:  # an rsgen refactor changed the sampler's attributes
        say(f"uint8 drawer unavailable ({exc!r}); using SRPairSampler.batch")
        return False


class Batches:
    """Batches drawn ahead by threads (PIL resizes and copies release the GIL)."""

    def __init__(
        self, sampler: SRPairSampler, batch: int, threads: int, ahead: int, pin: bool, fast: bool = True
    ) -> None:
        self.sampler, self.batch, self.pin = sampler, batch, pin
        self.draw = uint8_drawer(sampler) if fast else sampler.batch
        self.pool = ThreadPoolExecutor(max_workers=max(threads, 1), thread_name_prefix="batch")
        self.ahead = max(ahead, 1)
        self.queue: collections.deque = collections.deque()
        self.next_step = 0

    def _draw(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        lr, hr = self.draw(step, self.batch)
        if self.pin:
            lr, hr = lr.pin_memory(), hr.pin_memory()
        return lr, hr

    def start_at(self, step: int) -> None:
        for future in self.queue:
            future.cancel()
        self.queue.clear()
        self.next_step = step

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.queue or self.next_step - len(self.queue) != step:
            self.start_at(step)
        while len(self.queue) < self.ahead:
            self.queue.append(self.pool.submit(self._draw, self.next_step))
            self.next_step += 1
        return self.queue.popleft().result()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class Stop:
    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True
        say(f"signal {signum}: stopping after this step")


def lr_at(progress: float, base: float, warmup: float, floor_ratio: float) -> float:
    """Linear warm-up over ``warmup`` of the time, then cosine to ``floor_ratio * base``."""
    if progress < warmup:
        return base * max(progress / warmup, 0.01)
    p = min((progress - warmup) / max(1.0 - warmup, 1e-9), 1.0)
    return base * (floor_ratio + (1.0 - floor_ratio) * 0.5 * (1.0 + math.cos(math.pi * p)))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.time()
    deadline = args.train_until
    if args.train_seconds is not None:
        deadline = min(deadline or math.inf, t_start + args.train_seconds)
    if deadline is None and args.max_steps is None:
        raise SystemExit("give --train-seconds, --train-until or --max-steps")

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(args.seed)

    overrides = [
        f"model.scale={args.scale}",
        f"data.hr_crop={args.crop}",
        f"data.train={json.dumps(args.train)}",
        f"data.val={args.val}",
        f"train.batch_size={args.batch}",
        f"train.lr={args.lr}",
        "train.gan_steps=0",
        f"seed={args.seed}",
        *args.set,
    ]
    config = load_config(args.config, overrides)
    if args.data_root:
        config["data"]["root"] = str(args.data_root)
    run = args.out
    run.mkdir(parents=True, exist_ok=True)
    log = Log(run / "log.jsonl")

    generator = DEGANGenerator(DEGANConfig.from_dict(config["model"])).to(device)
    n_params = sum(p.numel() for p in generator.parameters())
    optimizer = torch.optim.Adam(generator.parameters(), lr=args.lr, betas=tuple(config["train"]["betas"]))

    t0 = time.time()
    root = config["data"].get("root")
    sampler = SRPairSampler(
        [resolve_data_path(p, root) for p in config["data"]["train"]],
        args.scale,
        args.crop,
        bool(config["data"].get("augment", True)),
        seed=args.seed,
    )
    holdout = Holdout(resolve_data_path(config["data"]["val"], root), args.scale, args.val_images)
    say(
        f"x{args.scale}: {n_params / 1e6:.3f} M parameters on {device}"
        f" ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}),"
        f" {len(sampler)} training images, {len(holdout.files)} held-out,"
        f" data loaded in {time.time() - t0:.1f} s, rasterio stand-in: {STUBBED}"
    )
    fast = check_drawer(sampler)
    say(f"uint8 batches (float conversion on the device): {fast}")
    batches = Batches(
        sampler, args.batch, args.data_threads, args.prefetch, pin=device.type == "cuda", fast=fast
    )

    t0 = time.perf_counter()
    sampler.batch(0, args.batch)
    sample_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    uint8_drawer(sampler)(0, args.batch)
    sample_u8_s = time.perf_counter() - t0
    say(
        f"drawing one batch of {args.batch} x {args.crop}px on one thread: {sample_s * 1e3:.0f} ms"
        f" (as uint8: {sample_u8_s * 1e3:.0f} ms)"
    )

    params = list(generator.parameters())

    def train_step(
        lr_t: torch.Tensor, hr_t: torch.Tensor, use_bf16: bool, cl: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if cl:
            lr_t = lr_t.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            sr = generator(lr_t)
        loss = F.mse_loss(sr.float(), hr_t)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, args.clip)
        else:
            norm = torch.zeros((), device=device)
        optimizer.step()
        return loss.detach(), norm.detach()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def to_device(pair: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(to_float(t.to(device, non_blocking=True)) for t in pair)  # type: ignore[return-value]

    # ---- pick the numeric mode by timing it (weights and optimizer restored afterwards)
    amp_choices = {"auto": [True, False], "bf16": [True], "fp32": [False]}[args.amp]
    cl_choices = {"auto": [False, True], "on": [True], "off": [False]}[args.channels_last]
    if device.type != "cuda" and not os.environ.get("TRAIN_DEGAN_TEST_BENCH"):
        amp_choices = [args.amp == "bf16"]  # auto means fp32 on a CPU
        cl_choices = [args.channels_last == "on"]
    variants = [(a, c) for a in amp_choices for c in cl_choices]
    bench: list[dict[str, Any]] = []
    if len(variants) > 1:
        # Warm each variant up (cuDNN autotuning), then time them interleaved, so that load
        # from the other process on the GPU spreads evenly over the variants.
        state = copy.deepcopy(generator.state_dict())
        opt_state = copy.deepcopy(optimizer.state_dict())
        pair = to_device(batches.get(0))
        times: dict[tuple[bool, bool], list[float]] = {v: [] for v in variants}
        losses: dict[tuple[bool, bool], float] = {}
        t_bench = time.perf_counter()
        for rnd in range(1 + args.bench_steps):
            for use_bf16, cl in variants:
                generator.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
                optimizer.load_state_dict(copy.deepcopy(opt_state))  # Adam state in this layout
                steps_now = 2 if rnd == 0 else 1
                sync()
                t0 = time.perf_counter()
                for _ in range(steps_now):
                    loss, _ = train_step(*pair, use_bf16, cl)
                sync()
                if rnd > 0:
                    times[(use_bf16, cl)].append(time.perf_counter() - t0)
                losses[(use_bf16, cl)] = float(loss)
        for (use_bf16, cl), ts in times.items():
            sec = float(np.median(ts))
            bench.append(
                {
                    "bf16": use_bf16,
                    "channels_last": cl,
                    "sec_per_step": round(sec, 4),
                    "loss": losses[(use_bf16, cl)],
                }
            )
            say(f"bench bf16={use_bf16} channels_last={cl}: {sec * 1e3:.1f} ms/step (median of {len(ts)})")
        say(f"bench took {time.perf_counter() - t_bench:.1f} s")
        generator.load_state_dict(state)
        optimizer.load_state_dict(opt_state)
        ok = [b for b in bench if math.isfinite(b["loss"])] or bench
        best_variant = min(ok, key=lambda b: b["sec_per_step"])
        use_bf16, cl = best_variant["bf16"], best_variant["channels_last"]
    else:
        use_bf16, cl = variants[0]
    generator.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
    say(f"training with bf16 autocast={use_bf16}, channels_last={cl}")

    config["train"].update({"warmup_steps": 0, "lr_milestones": [], "log_every": args.log_every})
    config["data"]["val_images"] = len(holdout.files)
    config["gpu_run"] = {
        "driver": "tools/gpu/train_degan_paper.py",
        "argv": sys.argv[1:] if argv is None else argv,
        "lr_schedule": f"linear warm-up over {args.warmup_frac:.0%} of the wall-clock budget, then "
        f"cosine to {args.min_lr_ratio} x lr at the deadline",
        "grad_clip_norm": args.clip,
        "bf16_autocast": use_bf16,
        "channels_last": cl,
        "tf32": device.type == "cuda",
        "selection": f"best val_gain_db on {config['data']['val']} ({len(holdout.files)} images)",
    }
    log.write(
        {
            "event": "start",
            "step": 0,
            "end": args.max_steps,
            "world_size": 1,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "bench": bench,
        }
    )

    # ---- train
    stop = Stop()
    test_nan_step = int(os.environ.get("TRAIN_DEGAN_TEST_NAN_AT", -1))  # tests of the restore path
    t_train = time.time()
    budget = (deadline - t_train) if deadline is not None else None
    if budget is not None and budget <= 0:
        say("no training time left")
        budget = 0.0
    next_eval = t_train + args.eval_every_s
    best_gain, best_step = -math.inf, -1
    step, skipped, restores = 0, 0, 0
    last_good = None
    loss_sum = torch.zeros((), device=device)
    norm_max = torch.zeros((), device=device)
    interval_t, interval_n = time.perf_counter(), 0
    step_times: list[float] = []
    print_at = time.time() + 15

    evaluated: dict[int, dict[str, float]] = {}

    def validate(step: int) -> dict[str, float]:
        nonlocal best_gain, best_step
        if step in evaluated:
            return evaluated[step]
        t0 = time.perf_counter()
        metrics = holdout.evaluate(generator, device, args.eval_batch)
        evaluated[step] = metrics
        log.write({"step": step, "event": "eval", **metrics})
        if metrics["val_gain_db"] > best_gain:
            best_gain, best_step = metrics["val_gain_db"], step
            save_pretrained(generator, run / "best", torch.float16, {"training": {"step": step, **metrics}})
        say(
            f"x{args.scale} eval step {step}: psnr {metrics['val_psnr']:.3f} (bicubic"
            f" {metrics['val_psnr_bicubic']:.3f}), gain {metrics['val_gain_db']:+.3f} dB,"
            f" best {best_gain:+.3f} @ {best_step} ({time.perf_counter() - t0:.1f} s)"
        )
        return metrics

    while True:
        now = time.time()
        if stop.requested or (deadline is not None and now >= deadline):
            break
        if args.max_steps is not None and step >= args.max_steps:
            break
        progress = (now - t_train) / budget if budget else step / max(args.max_steps or 1, 1)
        lr_now = lr_at(progress, args.lr, args.warmup_frac, args.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr_now
        torch.manual_seed(args.seed * 1_000_003 + step)  # the generator's noise level t
        lr_t, hr_t = to_device(batches.get(step))
        loss, norm = train_step(lr_t, hr_t, use_bf16, cl)
        if step == test_nan_step:
            loss = loss * float("nan")
        loss_sum += loss
        norm_max = torch.maximum(norm_max, norm)
        step += 1
        interval_n += 1
        if step % args.log_every == 0:
            mean_loss = float(loss_sum) / interval_n  # syncs
            seconds = (time.perf_counter() - interval_t) / interval_n
            step_times.append(seconds)
            if not math.isfinite(mean_loss):
                skipped += interval_n
                if last_good is None:
                    raise SystemExit("loss is not finite before any good state was kept")
                restores += 1
                generator.load_state_dict(last_good[0])
                optimizer.load_state_dict(copy.deepcopy(last_good[1]))
                say(
                    f"non-finite loss at step {step}: restored the state of step {last_good[2]}"
                    + (", bf16 off" if use_bf16 else "")
                )
                log.write({"step": step, "event": "restore", "from_step": last_good[2], "bf16_off": use_bf16})
                use_bf16 = False
                if restores > 3:
                    break
            else:
                log.write(
                    {
                        "step": step,
                        "content": mean_loss,
                        "lr": lr_now,
                        "sec_per_step": round(seconds, 4),
                        "grad_norm_max": round(float(norm_max), 4),
                    }
                )
                last_good = (
                    {k: v.detach().clone() for k, v in generator.state_dict().items()},
                    copy.deepcopy(optimizer.state_dict()),
                    step,
                )
            loss_sum.zero_()
            norm_max.zero_()
            interval_t, interval_n = time.perf_counter(), 0
            if time.time() >= print_at:
                say(
                    f"x{args.scale} step {step}: mse {mean_loss:.5f}, lr {lr_now:.2e},"
                    f" {seconds * 1e3:.1f} ms/step, {args.batch / seconds:.0f} crops/s,"
                    f" {(time.time() - t_train):.0f}/{budget or 0:.0f} s"
                )
                print_at = time.time() + 15
            if time.time() >= next_eval and (deadline is None or time.time() < deadline - 10):
                validate(step)
                next_eval = time.time() + args.eval_every_s
                interval_t = time.perf_counter()
    sync()
    train_seconds = time.time() - t_train
    batches.close()
    final = validate(step)
    save_pretrained(generator, run / "final", torch.float16, {"training": {"step": step, **final}})
    config["train"]["warmup_steps"] = step  # the PSNR phase that actually ran
    config["gpu_run"].update(
        {
            "steps": step,
            "train_seconds": round(train_seconds, 1),
            "best_step": best_step,
            "bf16_autocast_at_end": use_bf16,
        }
    )
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    steady = step_times[len(step_times) // 5 :] or step_times
    summary = {
        "scale": args.scale,
        "parameters": n_params,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "steps": step,
        "batch": args.batch,
        "crop": args.crop,
        "train_seconds": round(train_seconds, 1),
        "steps_per_s": round(step / train_seconds, 3) if train_seconds > 0 else None,
        "steady_sec_per_step_median": round(float(np.median(steady)), 4) if steady else None,
        "crops_per_s": round(step * args.batch / train_seconds, 1) if train_seconds > 0 else None,
        "bf16_autocast": use_bf16,
        "channels_last": cl,
        "bench": bench,
        "batch_draw_ms": round(sample_s * 1e3, 1),
        "batch_draw_uint8_ms": round(sample_u8_s * 1e3, 1),
        "uint8_batches": fast,
        "skipped_steps": skipped,
        "restores": restores,
        "best_step": best_step,
        "best_val_gain_db": best_gain,
        "final": final,
        "max_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        if device.type == "cuda"
        else None,
        "total_seconds": round(time.time() - t_start, 1),
    }
    (run / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.write({"event": "end", "step": step, "world_size": 1})
    say(f"x{args.scale} done: {json.dumps(summary)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
