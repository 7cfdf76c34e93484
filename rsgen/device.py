"""Which torch device rsgen runs on: CUDA when present, else the CPU; a bad request is a
one-line error. Pipelines, training and the CLI all choose devices here."""

from __future__ import annotations

import torch

from rsgen.errors import RsgenError


def pick_device(requested: str | torch.device | None = None) -> torch.device:
    """``requested`` if given, else CUDA when present, else CPU (no availability check)."""
    if requested is not None and str(requested):
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a usable torch device (CUDA when available if None); RsgenError if unusable."""
    try:
        chosen = pick_device(device)
    except RuntimeError as exc:
        raise RsgenError(f"unknown device {str(device)!r} (use cpu, cuda, cuda:N or mps)") from exc
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (chosen.index or 0) >= count:
            found = f"{count} CUDA device(s) found" if torch.cuda.is_available() else "CUDA is not available"
            raise RsgenError(f"device {str(device)!r} cannot be used: {found}")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise RsgenError(f"device {str(device)!r} cannot be used: MPS is not available")
    if chosen.type not in ("cpu", "cuda", "mps"):
        backend = getattr(torch, chosen.type, None)
        available = getattr(backend, "is_available", None)
        if not callable(available) or not available():
            raise RsgenError(f"device {str(device)!r} cannot be used: this torch has no usable {chosen.type}")
    return chosen
