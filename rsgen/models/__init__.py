"""Networks. One file per architecture; :func:`build_model` builds one from its config dict."""

from __future__ import annotations

from typing import Any

from torch import nn

from rsgen.models.degan_discriminator import DEGANDiscriminator, DiscriminatorConfig
from rsgen.models.degan_generator import DEGANConfig, DEGANGenerator

MODEL_REGISTRY: dict[str, tuple[type, type]] = {
    "degan_generator": (DEGANConfig, DEGANGenerator),
    "degan_discriminator": (DiscriminatorConfig, DEGANDiscriminator),
}


def build_model(config: dict[str, Any]) -> nn.Module:
    """Build a registered network from a config dict whose ``name`` picks the architecture."""
    name = config.get("name")
    if name not in MODEL_REGISTRY:
        raise ValueError(f"unknown model name {name!r}; known: {', '.join(MODEL_REGISTRY)}")
    config_cls, model_cls = MODEL_REGISTRY[name]
    return model_cls(config_cls.from_dict(config))


__all__ = [
    "DEGANConfig",
    "DEGANDiscriminator",
    "DEGANGenerator",
    "DiscriminatorConfig",
    "build_model",
]
