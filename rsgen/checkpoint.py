"""Checkpoints without pickle: safetensors for tensors, JSON for configs and state.

* A *pretrained model* is a folder ``config.json`` + ``model.safetensors`` (diffusers-style),
  written atomically. :func:`load_pretrained` never unpickles anything.
* A *training state* is one safetensors file holding every tensor (weights, optimizer
  moments, RNG) with the JSON metadata in the safetensors header, replaced atomically.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from rsgen.errors import RsgenError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def save_pretrained(
    model: nn.Module,
    directory: str | Path,
    dtype: torch.dtype = torch.float16,
    extra: dict[str, Any] | None = None,
    state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``model`` (config + weights cast to ``dtype``) to ``directory`` atomically.
    ``state`` replaces ``model.state_dict()`` (models that store only their trained part)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    config = {"model": model.config.to_dict(), **(extra or {})}
    state = {
        k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
        for k, v in (model.state_dict() if state is None else state).items()
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    tmp.chmod(0o755)
    try:
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        (tmp / WEIGHTS_NAME).chmod(0o644)
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            directory.rename(old)
            tmp.rename(directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def read_pretrained_config(directory: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a pretrained folder, validated."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise RsgenError(f"not a model folder (no {CONFIG_NAME})", directory)
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RsgenError(f"corrupt model config: {exc}", path) from exc
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise RsgenError("model config has no 'model' section", path)
    return config


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a corrupt or truncated file is a one-line RsgenError."""
    path = Path(path)
    if not path.is_file():
        raise RsgenError("weights file not found", path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise RsgenError(f"corrupt weights file ({exc})", path) from exc


def load_weights_into(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """``load_state_dict(strict=True)`` with shape/key mismatches reported as one line."""
    expected = model.state_dict()
    check_state_matches(expected, state, source)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})


def check_state_matches(
    expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], source: str | Path
) -> None:
    """Raise a one-line RsgenError unless ``state`` has exactly ``expected``'s keys and shapes."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensors (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"shape mismatch for {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)}")
        raise RsgenError("weights do not fit this architecture: " + "; ".join(parts), source)


def load_pretrained(directory: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from a pretrained folder; returns ``(model in eval mode, config)``."""
    from rsgen.models import build_model

    directory = Path(directory)
    config = read_pretrained_config(directory)
    try:
        model = build_model(config["model"])
    except (TypeError, ValueError) as exc:
        raise RsgenError(f"invalid model config: {exc}", directory / CONFIG_NAME) from exc
    load_weights_into(model, load_state_dict_file(directory / WEIGHTS_NAME), directory / WEIGHTS_NAME)
    return model.eval(), config


def save_training_state(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write all tensors + JSON ``meta`` to one safetensors file, replacing ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        save_file(tensors, tmp, metadata={"rsgen_meta": json.dumps(meta)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_training_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Inverse of :func:`save_training_state`."""
    from safetensors import safe_open

    path = Path(path)
    tensors = load_state_dict_file(path)
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("rsgen_meta", "{}"))
    return tensors, meta


def optimizer_to_tensors(
    optimizer: torch.optim.Optimizer, prefix: str
) -> tuple[dict[str, torch.Tensor], list]:
    """Flatten an optimizer state into named tensors + JSON-able param groups."""
    state = optimizer.state_dict()
    tensors = {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{prefix}.{index}.{name}"] = tensor
    return tensors, state["param_groups"]


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], prefix: str, param_groups: list
) -> None:
    """Restore what :func:`optimizer_to_tensors` flattened."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            index, name = key[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})
