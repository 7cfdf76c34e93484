"""What every pipeline shares: device and precision, seeds, progress bars, input checks, and
multi-component model folders.

A pipeline folder (diffusers-style) holds ``model_index.json`` naming the pipeline and its
components, and one component folder per entry (``config.json`` + ``model.safetensors`` for a
network, ``config.json`` alone for a noise scheduler)::

    my-text-to-image/
      model_index.json        {"pipeline": "text_to_image", "components": {"tokenizer": "vq_tokenizer", ...}}
      tokenizer/config.json + model.safetensors
      transformer/config.json + model.safetensors
      scheduler/config.json

Nothing is unpickled: each component's config names its class in a registry. A pipeline with
one component also loads a plain model folder (``config.json`` + ``model.safetensors``), which is
what the shipped super-resolution models are.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

import numpy as np
import torch
from PIL import Image

from rsgen.checkpoint import (
    CONFIG_NAME,
    MODEL_INDEX_NAME,
    read_component_config,
    save_pipeline_folder,
)
from rsgen.device import resolve_device, use_bf16
from rsgen.diffusion import Scheduler, build_scheduler
from rsgen.errors import RsgenError
from rsgen.models.pretrained import PretrainedModel
from rsgen.progress import progress_bar
from rsgen.shipped import resolve_model_path

T = TypeVar("T")


class Pipeline:
    """Base of what users call (:class:`~rsgen.pipelines.SuperResolver`, ...).

    Subclasses declare ``pipeline_name`` and ``component_classes`` (component name → network
    class, or :class:`~rsgen.diffusion.Scheduler` for a noise scheduler), keep each component
    as an attribute of that name, and take the components as keyword arguments of
    ``__init__`` followed by their own options.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; CUDA when available if None.
        bf16: run networks under bfloat16 autocast (see :meth:`autocast`): True / ``"bf16"``,
            False / ``"fp32"``, or ``"auto"`` (on where the device runs bf16 natively: CPUs with
            avx512_bf16 or AMX, GPUs that support it; elsewhere it is emulated and slow).
        progress: show progress bars (on stderr).
    """

    pipeline_name: ClassVar[str]
    component_classes: ClassVar[dict[str, type]]

    def __init__(
        self, device: str | torch.device | None = None, bf16: bool | str = False, progress: bool = True
    ):
        self.device = resolve_device(device)
        self.bf16 = use_bf16(bf16, self.device)
        self.progress = progress

    # ----------------------------------------------------------------------------- running

    def components(self) -> dict[str, Any]:
        """The pipeline's components by name."""
        return {name: getattr(self, name) for name in self.component_classes}

    def place(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` on the pipeline's device, in eval mode."""
        return module.to(self.device).eval()

    def autocast(self) -> contextlib.AbstractContextManager:
        """bfloat16 autocast on the pipeline's device when ``bf16`` is on, else nothing."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def progress_bar(self, iterable: Iterable[T] | None = None, **options: Any) -> Any:
        """A tqdm bar on stderr, disabled when the pipeline's ``progress`` is off."""
        return progress_bar(iterable, enabled=self.progress, **options)

    def random_generator(self, seed: int | None) -> tuple[torch.Generator, int]:
        """A torch generator on the pipeline's device seeded with ``seed`` (a fresh random seed
        when None), and that seed, so a run can report what reproduces it."""
        seed = secrets.randbits(63) if seed is None else int(seed)
        if not 0 <= seed < 2**64:
            raise RsgenError(f"seed must be in [0, 2**64), got {seed}")
        generator = torch.Generator(self.device)
        generator.manual_seed(seed)
        return generator, seed

    # ----------------------------------------------------------------------------- folders

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, **kwargs: Any) -> Self:
        """A shipped pipeline name or a folder written by :meth:`save_pretrained` (or, for a
        one-component pipeline, a plain model folder); ``kwargs`` go to ``__init__``."""
        return cls(**cls.load_components(resolve_model_path(name_or_path)), **kwargs)

    @classmethod
    def load_components(cls, directory: Path) -> dict[str, Any]:
        """Every component of the pipeline folder ``directory``, checked against the classes
        this pipeline expects."""
        index_path = directory / MODEL_INDEX_NAME
        if not index_path.is_file():
            if len(cls.component_classes) == 1 and (directory / CONFIG_NAME).is_file():
                ((name, component_class),) = cls.component_classes.items()
                return {name: load_component(directory, component_class)}
            raise RsgenError(f"not a {cls.pipeline_name} pipeline folder (no {MODEL_INDEX_NAME})", directory)
        index = read_model_index(index_path)
        if index["pipeline"] != cls.pipeline_name:
            raise RsgenError(f"is a {index['pipeline']!r} pipeline, not {cls.pipeline_name!r}", index_path)
        missing = sorted(set(cls.component_classes) - set(index["components"]))
        if missing:
            raise RsgenError(f"pipeline has no {', '.join(missing)} component", index_path)
        return {
            name: load_component(directory / name, component_class)
            for name, component_class in cls.component_classes.items()
        }

    def save_pretrained(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``model_index.json`` and one folder per component (networks in fp16), atomically."""
        components = {name: component.component_files() for name, component in self.components().items()}
        return save_pipeline_folder(directory, self.pipeline_name, components, extra)


def load_component(directory: Path, component_class: type) -> Any:
    """One component folder, as ``component_class`` (a network class or ``Scheduler``)."""
    if issubclass(component_class, PretrainedModel):
        return component_class.from_pretrained(directory)
    if issubclass(component_class, Scheduler):
        config = read_component_config(directory, "scheduler")["scheduler"]
        try:
            return build_scheduler(config)
        except (TypeError, ValueError) as exc:
            raise RsgenError(f"invalid scheduler config: {exc}", directory / CONFIG_NAME) from exc
    raise TypeError(f"no loader for components of type {component_class.__name__}")


def read_model_index(path: Path) -> dict[str, Any]:
    """``model_index.json``, checked to name a pipeline and its components."""
    try:
        index = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RsgenError(f"corrupt model index: {exc}", path) from exc
    if (
        not isinstance(index, dict)
        or not isinstance(index.get("pipeline"), str)
        or not isinstance(index.get("components"), dict)
    ):
        raise RsgenError("model index must name a 'pipeline' and its 'components'", path)
    return index


def as_rgb_array(image: Image.Image | np.ndarray, min_size: int = 2, what: str = "image") -> np.ndarray:
    """A PIL image or a uint8 ``(H, W, 3)`` array as a uint8 RGB array, with the checks the
    CLI makes on files: RsgenError for another layout, dtype, or a side under ``min_size``."""
    array = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise RsgenError(f"expected an RGB uint8 {what} (H, W, 3), got {array.dtype} {array.shape}")
    if min(array.shape[:2]) < min_size:
        raise RsgenError(f"{what} is {array.shape[1]}x{array.shape[0]} px; at least {min_size} px per side")
    return array
