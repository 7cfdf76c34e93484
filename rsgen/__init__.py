"""rsgen: generative remote sensing imagery (super-resolution with DEGAN, text-to-image with
RSVQ-Diffusion, text-guided editing of one image)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Editor", "SuperResolver", "TextToImage", "__version__"]


def __getattr__(name: str):
    # Lazy, so `import rsgen` stays cheap and `rsgen --help` starts fast.
    if name in ("Editor", "SuperResolver", "TextToImage"):
        import rsgen.pipelines

        return getattr(rsgen.pipelines, name)
    raise AttributeError(name)
