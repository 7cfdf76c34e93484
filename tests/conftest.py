"""Shared fixtures: tiny models, tiny synthetic images, the optional shared data folder, and the
two ways tests drive the ``rsgen`` command (:func:`run_cli`, :func:`run_cli_process`)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("RSGEN_DATA", REPO.parent / "shared" / "data"))

TINY_MODEL = {
    "channels": 8,
    "stem_channels": [4],
    "num_res_blocks": 1,
    "unet_base": 4,
    "transformer_heads": 2,
    "transformer_ff": 16,
    "tail_channels": [8],
    "global_skip": "bicubic",
}
TINY_DISCRIMINATOR = {"base_channels": 4, "num_blocks": 2, "fc_size": 8}


def tiny_overrides(**extra: object) -> list[str]:
    """``--set`` style overrides that shrink degan-cpu to a seconds-long test model."""
    items = {f"model.{k}": v for k, v in TINY_MODEL.items()}
    items.update({f"discriminator.{k}": v for k, v in TINY_DISCRIMINATOR.items()})
    items.update(extra)
    return [f"{k}={v}" for k, v in items.items()]


def textured_image(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A smooth random RGB texture (uint8 H x W x 3), more image-like than white noise."""
    rng = np.random.default_rng(seed)
    h, w = size
    coarse = rng.integers(0, 256, (max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC))


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Six 48x48 PNG/JPEG images in a nested folder."""
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for i in range(6):
        target = folder / ("sub" if i % 2 else "") / f"img{i}.{'png' if i < 4 else 'jpg'}"
        Image.fromarray(textured_image((48, 48), seed=i)).save(target)
    return folder


@pytest.fixture
def tiny_model_dir(tmp_path: Path) -> Path:
    """A saved, randomly initialised tiny x2 generator folder."""
    from rsgen.models import DEGANGenerator

    torch.manual_seed(0)
    generator = DEGANGenerator.from_config({**TINY_MODEL, "scale": 2})
    return generator.save_pretrained(tmp_path / "tiny-x2", dtype=torch.float32)


def needs_shared(*parts: str) -> Path:
    """The path under ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (shared data not available)")
    return path


# --------------------------------------------------------------------------- the command line


@dataclass(frozen=True)
class CliResult:
    """What one ``rsgen`` run left behind: its exit code, stdout and stderr."""

    code: int
    stdout: str
    stderr: str

    def ok(self) -> CliResult:
        """This result, once checked to be a success (stderr in the failure message)."""
        assert self.code == 0, f"rsgen exited {self.code}; stderr:\n{self.stderr[-3000:]}"
        return self

    def json(self) -> Any:
        """stdout as the one JSON document that ``--json`` prints."""
        return json.loads(self.stdout)

    def error_line(self) -> str:
        """The ``error: ...`` line, once checked to be all of stderr, with no traceback anywhere."""
        assert "Traceback" not in self.stdout + self.stderr, self.stderr
        assert self.stderr.count("\n") == 1 and self.stderr.endswith("\n"), self.stderr
        assert self.stderr.startswith("error: "), self.stderr
        return self.stderr.rstrip("\n")


def run_cli(*args: object, env: Mapping[str, str] | None = None, cwd: str | Path | None = None) -> CliResult:
    """Run ``rsgen ARGS`` in this process, through the console entry point users run
    (:func:`rsgen.cli.main.main`: exit codes and one-line errors included), with ``sys.argv`` set
    and stdout/stderr captured. ``env`` adds to (or overrides) the environment for the run.

    Fast (no interpreter start) and it sees the test's monkeypatches. An exception that escapes
    ``main()`` (a bug: users would see a traceback) propagates, so the test shows where it came from.
    """
    from rsgen.cli.main import main

    stdout, stderr = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()  # ``--threads`` sets it for the process
    code = 0
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, dict(env or {})))
        stack.enter_context(mock.patch.object(sys, "argv", ["rsgen", *map(str, args)]))
        if cwd is not None:
            stack.enter_context(contextlib.chdir(cwd))
        stack.callback(torch.set_num_threads, threads)
        stack.enter_context(contextlib.redirect_stdout(stdout))
        stack.enter_context(contextlib.redirect_stderr(stderr))
        try:
            main()
        except SystemExit as exc:  # what the interpreter does with it at exit
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                code = 1
    return CliResult(code, stdout.getvalue(), stderr.getvalue())


def run_cli_process(
    *args: object, env: Mapping[str, str] | None = None, cwd: str | Path | None = None, timeout: float = 300
) -> CliResult:
    """Run ``python -m rsgen ARGS`` in a fresh interpreter (cwd: the repository unless given).

    Slower (~2-3 s to start torch): only for what the process boundary decides — stderr free of
    library warnings, the exit status the shell sees, files left behind after the process ended.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "rsgen", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO if cwd is None else cwd,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


SCENES = {"forest": (20, 120, 30), "beach": (230, 210, 150), "river": (40, 80, 200)}


@pytest.fixture
def caption_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny rsicd_aid150-style folder: 3 tinted scenes x 5 images (4 train, 1 test)."""
    monkeypatch.setenv("RSGEN_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "captions"
    (folder / "images").mkdir(parents=True)
    lines = []
    for s, (scene, tint) in enumerate(SCENES.items()):
        for i in range(5):
            texture = textured_image((64, 64), seed=10 * s + i).astype(np.float32)
            image = (0.4 * texture + 0.6 * np.array(tint, np.float32)).astype(np.uint8)
            name = f"{scene}_{i}.jpg"
            Image.fromarray(image).save(folder / "images" / name)
            captions = [f"a {scene} seen from above", f"A {scene}  seen from above .", f"many {scene} pixels"]
            split = "test" if i == 4 else "train"
            lines.append(json.dumps({"file": name, "scene": scene, "split": split, "captions": captions}))
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return folder
