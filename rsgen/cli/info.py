"""``rsgen info`` and ``rsgen models``: what a model costs, and what is built in."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rsgen.cli.app import JsonOption, app, check_scale, emit_json
from rsgen.errors import RsgenError


@app.command("info")
def info_command(
    target: Annotated[
        str, typer.Argument(help="Config name/YAML (degan-paper) or model name/folder (degan-x4).")
    ] = "degan-paper",
    scale: Annotated[int | None, typer.Option(help="Scale for a config [default: the config's].")] = None,
    size: Annotated[int, typer.Option(min=1, help="LR input side for the MAC count.")] = 64,
    as_json: JsonOption = False,
) -> None:
    """Parameters and multiply-accumulates (MACs) of a generator and its discriminator."""
    import torch

    from rsgen.models import DEGANConfig, DEGANDiscriminator, DEGANGenerator, DiscriminatorConfig
    from rsgen.models.profile import count_macs, count_parameters

    model_cfg, disc_cfg = _model_configs(target)
    if scale is not None:
        model_cfg["scale"] = check_scale(scale)
    try:
        generator = DEGANGenerator(DEGANConfig.from_dict(model_cfg))
        disc = DEGANDiscriminator(DiscriminatorConfig.from_dict(disc_cfg)) if disc_cfg else None
    except (TypeError, ValueError) as exc:
        raise RsgenError(f"invalid model config: {exc}", target) from exc
    lr = torch.zeros(1, 3, size, size)
    hr_side = size * generator.scale
    report = {
        "target": target,
        "scale": generator.scale,
        "generator_params": count_parameters(generator),
        "generator_macs": count_macs(generator, lr),
        "input": [size, size],
        "output": [hr_side, hr_side],
    }
    if disc is not None:
        report["discriminator_params"] = count_parameters(disc)
        report["discriminator_macs"] = count_macs(disc, torch.zeros(1, 3, hr_side, hr_side))
    if as_json:
        emit_json(report)
        return
    typer.echo(f"{target} (x{generator.scale})")
    typer.echo(
        f"  generator:     {report['generator_params'] / 1e6:.3f} M parameters, "
        f"{report['generator_macs'] / 1e9:.2f} GMACs for {size}x{size} -> {hr_side}x{hr_side}"
    )
    if disc is not None:
        typer.echo(
            f"  discriminator: {report['discriminator_params'] / 1e6:.3f} M parameters, "
            f"{report['discriminator_macs'] / 1e9:.2f} GMACs on {hr_side}x{hr_side}"
        )


def _model_configs(target: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(generator config, discriminator config or None) from a config or a model folder."""
    from rsgen.checkpoint import read_component_config
    from rsgen.config import load_config
    from rsgen.pipelines.super_resolution import GENERATOR_NAME
    from rsgen.shipped import WEIGHTS_DIR

    if Path(target).is_dir() or (WEIGHTS_DIR / target).is_dir():
        folder = Path(target) if Path(target).is_dir() else WEIGHTS_DIR / target
        model = dict(read_component_config(folder)["model"])
        if model.get("name", GENERATOR_NAME) != GENERATOR_NAME:
            raise RsgenError(f"not a super-resolution model (architecture {model['name']!r})", folder)
        return model, None
    config = load_config(target)
    return dict(config["model"]), dict(config.get("discriminator") or {}) or None


@app.command("models")
def models_command(as_json: JsonOption = False) -> None:
    """List the built-in pretrained models and training configs."""
    from rsgen.config import builtin_config_names
    from rsgen.shipped import available_models

    data = {"models": available_models(), "configs": builtin_config_names()}
    if as_json:
        emit_json(data)
    else:
        typer.echo("models:  " + ", ".join(data["models"]))
        typer.echo("configs: " + ", ".join(data["configs"]))
