"""The base of every network's config dataclass: strict ``from_dict`` and ``to_dict``."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, ClassVar, Self


class ModelConfig:
    """Mixin for config dataclasses. ``MODEL_NAME`` is the registry key stored as ``name``."""

    MODEL_NAME: ClassVar[str] = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build from a plain dict, rejecting unknown keys (typos in YAML fail loudly)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"name"})
        if unknown:
            raise ValueError(f"unknown {cls.MODEL_NAME} option(s): {', '.join(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.MODEL_NAME, **asdict(self)}
