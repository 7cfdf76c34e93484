"""What users call: pipelines compose models, schedules and raster I/O."""

from rsgen.pipelines.editor import Editor, EditResult, EditSettings
from rsgen.pipelines.super_resolution import SuperResolver
from rsgen.pipelines.text_to_image import GenerationResult, TextToImage
from rsgen.shipped import available_models

__all__ = [
    "EditResult",
    "EditSettings",
    "Editor",
    "GenerationResult",
    "SuperResolver",
    "TextToImage",
    "available_models",
]
