"""rsgen: generative remote sensing imagery (super-resolution with DEGAN, ...)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["SuperResolver", "TextToImage", "__version__"]


def __getattr__(name: str):
    # Lazy, so `import rsgen` stays cheap and `rsgen --help` starts fast.
    if name == "SuperResolver":
        from rsgen.pipelines import SuperResolver

        return SuperResolver
    if name == "TextToImage":
        from rsgen.pipelines import TextToImage

        return TextToImage
    raise AttributeError(name)
