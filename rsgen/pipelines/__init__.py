"""What users call: pipelines compose models, schedules and raster I/O."""

from rsgen.pipelines.super_resolution import SuperResolver
from rsgen.shipped import available_models

__all__ = ["SuperResolver", "available_models"]
