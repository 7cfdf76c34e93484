"""Networks, one file per architecture. Each stored network is a
:class:`~rsgen.models.pretrained.PretrainedModel`; :mod:`rsgen.models.loading` builds or loads
any of them by name."""

from __future__ import annotations

from rsgen.models.degan_discriminator import DEGANDiscriminator, DiscriminatorConfig
from rsgen.models.degan_generator import DEGANConfig, DEGANGenerator
from rsgen.models.loading import build_model, load_image_text_model

__all__ = [
    "DEGANConfig",
    "DEGANDiscriminator",
    "DEGANGenerator",
    "DiscriminatorConfig",
    "build_model",
    "load_image_text_model",
]
