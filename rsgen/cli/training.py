"""``rsgen train`` and ``rsgen curves``: training runs and their curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rsgen.cli.app import DeviceOption, QuietOption, app
from rsgen.errors import RsgenError


@app.command("train")
def train_command(
    config: Annotated[
        str | None,
        typer.Argument(
            help="Built-in config name (degan-cpu, degan-paper, "
            "ablations/degan-cpu-baseline...) or YAML file."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run folder (checkpoints, log, exports).")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override: section.key=value (repeatable).")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Resume the run in this folder from its checkpoint.")
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Stop after this many steps (total, not additional).")
    ] = None,
    device: DeviceOption = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads per process.")] = None,
    quiet: QuietOption = False,
) -> None:
    """Train a model. Works alone or under `torchrun --nproc_per_node=N`, with checkpoints and --resume."""
    from rsgen.config import apply_overrides, load_config, load_config_file
    from rsgen.train.distributed import exit_torchrun_worker
    from rsgen.train.loop import run_training

    if threads:
        import torch

        torch.set_num_threads(threads)
    if resume is not None:
        if config is not None:
            raise RsgenError("give either CONFIG (a new run) or --resume RUN_FOLDER, not both")
        saved = resume / "config.yaml"
        if not saved.is_file():
            raise RsgenError("not a run folder (no config.yaml)", resume)
        cfg = apply_overrides(load_config_file(saved), set_ or [])
        run_dir = resume
    else:
        if config is None or out is None:
            raise RsgenError("a new run needs CONFIG and --out RUN_FOLDER (or --resume RUN_FOLDER)")
        cfg = load_config(config, set_ or [])
        run_dir = out
    summary = run_training(
        cfg, run_dir, resume=resume is not None, max_steps=max_steps, device=device, progress=not quiet
    )
    typer.echo(json.dumps(summary))
    exit_torchrun_worker(0)


@app.command("curves")
def curves_command(
    run: Annotated[Path, typer.Argument(help="Run folder or log.jsonl.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG file to write.")] = Path("curves.png"),
) -> None:
    """Plot the losses and validation numbers of a training run."""
    from rsgen.train.curves import plot_curves

    typer.echo(str(plot_curves(run, output, title=str(run))))
