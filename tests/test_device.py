"""Device choice and the ``bf16: auto`` setting."""

from __future__ import annotations

import pytest

from rsgen import device as device_module
from rsgen.device import bf16_is_fast, use_bf16
from rsgen.errors import RsgenError


@pytest.mark.parametrize(
    ("flags", "fast"),
    [
        ({"avx2", "fma"}, False),
        ({"avx512f", "avx512_bf16"}, True),
        ({"amx_bf16", "amx_tile"}, True),
        (set(), False),
    ],
)
def test_bf16_is_fast_on_a_cpu_only_with_native_bf16_units(monkeypatch, flags, fast):
    monkeypatch.setattr(device_module, "_cpu_flags", lambda: flags)
    assert bf16_is_fast("cpu") is fast
    assert use_bf16("auto", "cpu") is fast
    assert use_bf16("AUTO", "cpu") is fast


def test_explicit_bf16_settings_are_kept_whatever_the_cpu(monkeypatch):
    monkeypatch.setattr(device_module, "_cpu_flags", lambda: set())
    assert use_bf16(True, "cpu") is True
    assert use_bf16(False, "cpu") is False
    assert use_bf16(None, "cpu") is False
    assert use_bf16("bf16", "cpu") is True and use_bf16("fp32", "cpu") is False  # --precision


def test_an_unknown_bf16_setting_is_an_error():
    with pytest.raises(RsgenError, match="bf16 must be true, false or auto"):
        use_bf16("fast", "cpu")


def test_cpu_flags_are_read_from_proc_cpuinfo():
    flags = device_module._cpu_flags()
    assert isinstance(flags, set)
    # every x86-64 or arm64 Linux reports some flag; other systems report none
    assert flags or not __import__("os").path.exists("/proc/cpuinfo")
