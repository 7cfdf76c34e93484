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


def bf16_is_fast(device: str | torch.device) -> bool:
    """Whether bfloat16 runs natively on ``device``: a CUDA GPU that supports it, or a CPU with
    avx512_bf16 or AMX units. Elsewhere bf16 is emulated and slower than float32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def _cpu_flags() -> set[str]:
    """The CPU feature flags Linux reports (x86 ``flags``, Arm ``Features``; empty where
    /proc/cpuinfo does not exist)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def use_bf16(setting: bool | str | None, device: str | torch.device) -> bool:
    """A ``bf16`` setting (a config's, or a ``--precision``) resolved for ``device``: true or
    ``bf16``, false or ``fp32``, or ``auto`` (on where :func:`bf16_is_fast`). Anything else is an
    RsgenError."""
    if setting is None or isinstance(setting, bool):
        return bool(setting)
    choice = str(setting).lower()
    if choice == "auto":
        return bf16_is_fast(device)
    if choice in ("bf16", "fp32"):
        return choice == "bf16"
    raise RsgenError(f"bf16 must be true, false or auto (precision: auto, fp32 or bf16), not {setting!r}")
