"""Weight files without pickle: safetensors for tensors, JSON for configs and state.

* A *component folder* is ``config.json`` + ``model.safetensors`` (diffusers-style), written
  atomically (:func:`save_component`). Networks build themselves from it
  (:class:`rsgen.models.pretrained.PretrainedModel`); a pipeline folder holds one per component.
* :func:`read_weights_file` is the one reader of weight files, ours or a user's
  (``.safetensors``, or ``torch.save`` files loaded with ``weights_only=True``): every
  problem is a one-line :class:`RsgenError` naming the file.
* A *training state* is one safetensors file holding every tensor (weights, optimizer
  moments, RNG) with the JSON metadata in the safetensors header, replaced atomically.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rsgen.errors import RsgenError
from rsgen.files import atomic_file, write_folder_atomically

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_INDEX_NAME = "model_index.json"

#: What a pipeline folder stores of one component: its registry name (``config.NAME``), its
#: config.json contents and its tensors (None for a noise scheduler).
ComponentFiles = tuple[str, dict[str, Any], "dict[str, torch.Tensor] | None"]


def save_component(
    directory: str | Path,
    config: dict[str, Any],
    state: dict[str, torch.Tensor] | None,
    dtype: torch.dtype | None = torch.float16,
) -> Path:
    """Write ``config`` (as config.json) and ``state`` (floating tensors cast to ``dtype``; no
    weights file when None, e.g. a noise scheduler) to ``directory``, atomically: a reader sees
    the old folder or the new one, never a mix."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    return write_folder_atomically(directory, lambda tmp: write_component(tmp, config, state, dtype))


def save_pipeline_folder(
    directory: str | Path,
    pipeline_name: str,
    components: dict[str, ComponentFiles],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a pipeline folder atomically: ``model_index.json`` (the pipeline's name, each
    component's registry name, ``extra``) and one component folder per entry (fp16 tensors)."""
    index = {
        "pipeline": pipeline_name,
        "components": {name: kind for name, (kind, _, _) in components.items()},
        **(extra or {}),
    }

    def write(tmp: Path) -> None:
        for name, (_, config, state) in components.items():
            (tmp / name).mkdir()
            write_component(tmp / name, config, state)
        (tmp / MODEL_INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")

    return write_folder_atomically(Path(directory), write)


def write_component(
    directory: Path,
    config: dict[str, Any],
    state: dict[str, torch.Tensor] | None,
    dtype: torch.dtype | None = torch.float16,
) -> None:
    """Write config.json (+ model.safetensors) into an existing, not yet published folder."""

    def stored(tensor: torch.Tensor) -> torch.Tensor:
        cast = dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype
        return tensor.detach().to("cpu", cast).contiguous()

    if state is not None:
        save_file({k: stored(v) for k, v in state.items()}, str(directory / WEIGHTS_NAME), {"format": "pt"})
        (directory / WEIGHTS_NAME).chmod(0o644)
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")


def read_component_config(directory: str | Path, section: str = "model") -> dict[str, Any]:
    """The ``config.json`` of a component folder, checked to hold a ``section`` mapping."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise RsgenError(f"not a model folder (no {CONFIG_NAME})", directory)
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RsgenError(f"corrupt model config: {exc}", path) from exc
    if not isinstance(config, dict) or not isinstance(config.get(section), dict):
        raise RsgenError(f"model config has no {section!r} section", path)
    return config


def read_weights_file(path: str | Path, allowed_non_tensors: Collection[str] = ()) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a ``torch.save`` file (``weights_only=True``, so
    nothing is unpickled but tensors), unwrapped from ``state_dict`` / ``model`` and stripped
    of a DataParallel ``module.`` prefix. Entries named in ``allowed_non_tensors`` may hold
    other values (OpenAI's TorchScript metadata); any other problem is a one-line error."""
    path = Path(path)
    if path.is_dir():
        raise RsgenError("is a directory, expected a weight file", path)
    if not path.is_file():
        raise RsgenError("weight file not found", path)
    if path.stat().st_size == 0:
        raise RsgenError("cannot read weight file (it is empty)", path)
    if _is_torchscript(path):
        raise RsgenError(
            "is a TorchScript archive (OpenAI's JIT .pt); save torch.jit.load(path).state_dict() "
            "with torch.save and load that",
            path,
        )
    try:
        if path.suffix == ".safetensors":
            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to parse is a bad user file
        raise RsgenError(f"cannot read weight file ({_describe_load_error(exc)})", path) from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not state:
        held = "an empty dict" if isinstance(state, dict) else f"a {type(state).__name__}"
        raise RsgenError(f"weight file holds {held}, not a state dict", path)
    if all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    bad = next(
        (k for k, v in state.items() if not isinstance(v, torch.Tensor) and k not in allowed_non_tensors),
        None,
    )
    if bad is not None:
        raise RsgenError(f"weight file entry {bad!r} is not a tensor", path)
    return state


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/")[-1] == "constants.pkl" for name in archive.namelist())


def _describe_load_error(exc: Exception) -> str:
    """One line about a load failure, without torch's advice to retry with ``weights_only=False``."""
    if isinstance(exc, pickle.UnpicklingError):
        return "not a torch weight file, or it holds objects other than tensors"
    if isinstance(exc, SafetensorError):
        return f"corrupt safetensors file: {str(exc).splitlines()[0][:200]}"
    detail = (str(exc).strip().splitlines() or [""])[0].split(". ")[0][:200]
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


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


def save_training_state(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write all tensors + JSON ``meta`` to one safetensors file, replacing ``path`` atomically."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata={"rsgen_meta": json.dumps(meta)})


def load_training_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Inverse of :func:`save_training_state`; a file without rsgen's metadata (another
    program's safetensors, or broken JSON in it) is a one-line error."""
    from safetensors import safe_open

    path = Path(path)
    tensors = read_weights_file(path)
    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get("rsgen_meta")
    if raw is None:
        raise RsgenError("not an rsgen training checkpoint (no rsgen_meta metadata)", path)
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RsgenError(f"checkpoint metadata is not JSON ({exc.msg})", path) from exc
    if not isinstance(meta, dict):
        raise RsgenError("checkpoint metadata is not a JSON object", path)
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
