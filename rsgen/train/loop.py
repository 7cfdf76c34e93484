"""The one training loop of rsgen: single process or ``torchrun --nproc_per_node=N``.

It owns what every task shares: process group, per-step seeding (so ``--resume`` replays
exactly), logging to ``log.jsonl``, periodic atomic checkpoints, validation, the export of
the best (by the task's ``selection_metric``, higher or lower per its ``selection_mode``) and
final weights, the task's weight average (EMA: updated after every step, used for validation
and exports, checkpointed), and a progress bar. The task (picked by ``config['task']``, see
:mod:`rsgen.train.tasks`) owns models, losses and data.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from rsgen.checkpoint import CONFIG_NAME, MODEL_INDEX_NAME, load_training_state, save_training_state
from rsgen.errors import RsgenError
from rsgen.progress import progress_bar
from rsgen.train.distributed import DistContext, init_distributed, shutdown_distributed
from rsgen.train.ema import PREFIX as EMA_PREFIX
from rsgen.train.tasks import TrainTask, build_task
from rsgen.train.tasks.base import selection_mode_of

CHECKPOINT_NAME = "checkpoint.safetensors"
LOG_NAME = "log.jsonl"


def step_seed(seed: int, rank: int, step: int) -> int:
    """A distinct, reproducible torch seed for every (run seed, rank, step)."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def run_training(
    config: dict[str, Any],
    run_dir: str | Path,
    resume: bool = False,
    max_steps: int | None = None,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train per ``config`` into ``run_dir``; returns a summary dict (also the last log line)."""
    run_dir = Path(run_dir)
    ctx = init_distributed(device)
    ctx.progress = progress
    try:
        return _train(config, run_dir, resume, max_steps, ctx, progress)
    finally:
        shutdown_distributed()


def _train(
    config: dict[str, Any],
    run_dir: Path,
    resume: bool,
    max_steps: int | None,
    ctx: DistContext,
    progress: bool,
) -> dict[str, Any]:
    checkpoint = run_dir / CHECKPOINT_NAME
    if checkpoint.exists() and not resume:
        raise RsgenError(
            "run folder already has a checkpoint: pass --resume, or choose another folder", run_dir
        )
    if resume and not checkpoint.exists():
        raise RsgenError(f"no {CHECKPOINT_NAME} to resume from (start a new run with another --out)", run_dir)
    seed = int(config.get("seed", 0))
    torch.manual_seed(seed)  # identical initial weights on every rank
    try:
        task = build_task(config, ctx)
    except (KeyError, TypeError, ValueError) as exc:  # a YAML or --set value the task cannot use
        raise RsgenError(f"invalid training config: {type(exc).__name__}: {exc}") from exc
    mode = selection_mode_of(task)
    ema = getattr(task, "ema", None)
    start = 0
    if resume:
        tensors, meta = load_training_state(checkpoint)
        if not isinstance(meta.get("step"), int) or "task" not in meta:
            raise RsgenError("checkpoint metadata lacks the step or the task state", checkpoint)
        try:
            task.load_state(tensors, meta["task"])
        except (KeyError, RuntimeError, ValueError) as exc:
            detail = " ".join(str(exc).split())[:200]
            raise RsgenError(f"checkpoint does not fit this run's config ({detail})", checkpoint) from exc
        if ema is not None:
            ema.load_state(tensors)  # none saved (older checkpoint, EMA just turned on): restart
        start = int(meta["step"])
    end = task.total_steps if max_steps is None else min(int(max_steps), task.total_steps)
    if resume and end <= start:
        raise RsgenError(f"the checkpoint is at step {start}: nothing to do up to step {end}", checkpoint)
    train_cfg = config["train"]
    every = {k: int(train_cfg.get(k, 0)) for k in ("log_every", "eval_every", "checkpoint_every")}

    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    log = _Logger(run_dir / LOG_NAME, ctx.is_main)
    log.write(
        {
            "event": "start",
            "step": start,
            "end": end,
            "world_size": ctx.world_size,
            "device": str(ctx.device),
            "threads": torch.get_num_threads(),
        }
    )
    best = _best_score(run_dir / "best", task.selection_metric, mode)
    bar = progress_bar(
        total=end, initial=start, desc="train", enabled=progress and ctx.is_main, mininterval=2.0, leave=True
    )
    tic, done = time.perf_counter(), 0
    stop = _StopRequest()
    for step in range(start, end):
        if stop.agreed(ctx):
            bar.close()
            stop.restore()
            return _stop_early(task, ctx, log, run_dir, checkpoint, step, best)
        torch.manual_seed(step_seed(seed, ctx.rank, step))
        logs = task.train_step(step)
        if ema is not None:
            ema.update(step)
        done += 1
        bar.update(1)
        number = step + 1
        if every["log_every"] and number % every["log_every"] == 0:
            seconds = (time.perf_counter() - tic) / done
            tic, done = time.perf_counter(), 0
            log.write({"step": number, **logs, "sec_per_step": round(seconds, 4)})
            bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k != "lr"})
        if every["eval_every"] and number % every["eval_every"] == 0 or number == end:
            best = _validate(task, ctx, log, run_dir, number, best)
        if every["checkpoint_every"] and number % every["checkpoint_every"] == 0 or number == end:
            _save_checkpoint(task, ctx, checkpoint, number)
    bar.close()
    stop.restore()

    checksums = [row[0] for row in ctx.all_gather_floats([task.weight_checksum()])]
    summary = {"event": "end", "step": end, "world_size": ctx.world_size, "rank_checksums": checksums}
    if ctx.is_main:
        with _averaged(task):
            task.export(run_dir / "final", {"training": {"step": end, "config": config}})
    log.write(summary)
    ctx.barrier()
    return summary


def _stop_early(
    task: TrainTask, ctx: DistContext, log: _Logger, run_dir: Path, checkpoint: Path, step: int, best: float
) -> dict[str, Any]:
    """On SIGTERM/SIGINT: validate, checkpoint at the last finished step and return."""
    _validate(task, ctx, log, run_dir, step, best)
    _save_checkpoint(task, ctx, checkpoint, step)
    summary = {"event": "stopped", "step": step, "world_size": ctx.world_size}
    log.write(summary)
    return summary


class _StopRequest:
    """SIGTERM/SIGINT ask the loop to stop after the current step (with a checkpoint) instead
    of dying mid-step. Under torchrun the ranks agree on the step to stop at."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True

    def agreed(self, ctx: DistContext) -> bool:
        if not ctx.distributed:
            return self.requested
        return any(row[0] > 0 for row in ctx.all_gather_floats([float(self.requested)]))

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def _averaged(task: TrainTask):
    """A context in which the task's model holds its EMA weights (when it keeps an EMA)."""
    ema = getattr(task, "ema", None)
    return nullcontext() if ema is None else ema.averaged_weights()


def _validate(
    task: TrainTask, ctx: DistContext, log: _Logger, run_dir: Path, step: int, best: float
) -> float:
    """Validate on rank 0 (with the EMA weights, if any) and export ``best/`` when the task's
    selection metric improves on ``best``; returns the new best."""
    if ctx.is_main:
        mode = selection_mode_of(task)
        with _averaged(task):
            metrics = task.evaluate()
            if metrics:
                log.write({"step": step, "event": "eval", **metrics})
                score = metrics.get(task.selection_metric)
                if score is not None and _improves(float(score), best, mode):
                    best = float(score)
                    task.export(run_dir / "best", {"training": {"step": step, **metrics}})
    ctx.barrier()
    return best


def _improves(score: float, best: float, mode: str) -> bool:
    if math.isnan(score):
        return False
    return score < best if mode == "min" else score > best


def _save_checkpoint(task: TrainTask, ctx: DistContext, path: Path, step: int) -> None:
    if ctx.is_main:
        tensors, meta = task.state_tensors()
        ema = getattr(task, "ema", None)
        if ema is not None:
            clash = [k for k in tensors if k.startswith(EMA_PREFIX)]
            if clash:
                raise ValueError(f"task state tensor names may not start with {EMA_PREFIX!r}: {clash[0]}")
            tensors = {**tensors, **ema.state_tensors()}
        save_training_state(path, tensors, {"step": step, "task": meta})
    ctx.barrier()


def _best_score(best_dir: Path, metric: str, mode: str = "max") -> float:
    """The selection score of the ``best/`` export already in the run folder (a resumed run
    keeps it unless it beats it), or the worst possible score. A model folder keeps it in
    ``config.json``, a pipeline folder in ``model_index.json``."""
    worst = float("inf") if mode == "min" else float("-inf")
    paths = [best_dir / name for name in (CONFIG_NAME, MODEL_INDEX_NAME) if (best_dir / name).is_file()]
    if not paths:
        return worst
    value = json.loads(paths[0].read_text()).get("training", {}).get(metric)
    return worst if value is None else float(value)


class _Logger:
    """Appends JSON lines (rank 0 only)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            record = {"time": round(time.time(), 1), **record}
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
