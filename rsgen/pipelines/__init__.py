"""What users call: pipelines compose models, schedules and raster I/O."""

from rsgen.hub import available_models
from rsgen.pipelines.super_resolution import SuperResolver

__all__ = ["SuperResolver", "available_models"]
