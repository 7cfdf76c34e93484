"""Bad input through the command line's entry point (``rsgen sr``).

For every case: a non-zero exit code, exactly one stderr line ``error: ...`` naming the
file (or option) and the problem, no traceback, and nothing left in the output folder.
Every case runs in-process (:func:`tests.conftest.run_cli`); a few also run as a real
``python -m rsgen`` process (:func:`tests.conftest.run_cli_process`), where library warnings
would reach stderr and a partial file would outlive the crashed process.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image

from tests.conftest import CliResult, run_cli, run_cli_process, textured_image

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


@dataclass
class Case:
    """A command line (after ``rsgen sr``) and what its error line must contain."""

    args: list[str | Path]
    expected: list[str | Path]
    code: int = 1
    outputs: list[Path] = field(default_factory=list)


def good_png(folder: Path, name: str = "good.png", size: tuple[int, int] = (8, 8)) -> Path:
    path = folder / name
    Image.fromarray(textured_image(size)).save(path)
    return path


def sr_args(src: Path, out: Path, model: Path, scale: str = "2") -> list[str | Path]:
    return [src, "-o", out / "result.png", "--model", model, "--scale", scale]


def missing_file(tmp: Path, model: Path, out: Path) -> Case:
    src = tmp / "missing.png"
    return Case(sr_args(src, out, model), [src, "not found"])


def text_named_png(tmp: Path, model: Path, out: Path) -> Case:
    src = tmp / "notes.png"
    src.write_text("this is a text file, not a picture\n")
    return Case(sr_args(src, out, model), [src, "not a PNG, JPEG or TIFF image"])


def truncated_jpeg(tmp: Path, model: Path, out: Path) -> Case:
    full = tmp / "full.jpg"
    Image.fromarray(textured_image((32, 32))).save(full, quality=95)
    src = tmp / "truncated.jpg"
    data = full.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    return Case(sr_args(src, out, model), [src, "truncated"])


def zero_byte_file(tmp: Path, model: Path, out: Path) -> Case:
    src = tmp / "empty.png"
    src.touch()
    return Case(sr_args(src, out, model), [src, "empty (0 bytes)"])


def one_pixel_image(tmp: Path, model: Path, out: Path) -> Case:
    src = good_png(tmp, "dot.png", (1, 1))
    return Case(sr_args(src, out, model), [src, "1x1 px", "at least 2x2"])


def complex_geotiff(tmp: Path, model: Path, out: Path) -> Case:
    src = tmp / "complex.tif"
    profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 1, "dtype": "complex64"}
    with rasterio.open(src, "w", **profile) as ds:
        ds.write(np.ones((1, 8, 8), np.complex64))
    return Case(sr_args(src, out, model), [src, "unsupported data type complex64"])


def palette_geotiff(tmp: Path, model: Path, out: Path) -> Case:
    src = tmp / "classes.tif"
    profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 1, "dtype": "uint8"}
    with rasterio.open(src, "w", **profile, photometric="palette") as ds:
        ds.write(np.tile(np.arange(8, dtype=np.uint8) % 2, (1, 8, 1)))
        ds.write_colormap(1, {0: (0, 128, 0, 255), 1: (0, 0, 255, 255)})
    return Case(sr_args(src, out, model), [src, "palette", "gdal_translate -expand rgb"])


def scale_three(tmp: Path, model: Path, out: Path) -> Case:
    return Case(sr_args(good_png(tmp), out, model, scale="3"), ["--scale", "2 or 4", "got 3"])


def model_for_wrong_scale(tmp: Path, model: Path, out: Path) -> Case:
    return Case(sr_args(good_png(tmp), out, model, scale="4"), [model, "model is for x2, not x4"])


def truncated_checkpoint(tmp: Path, model: Path, out: Path) -> Case:
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return Case(sr_args(good_png(tmp), out, model), [weights, "cannot read weight file"])


def garbage_config(tmp: Path, model: Path, out: Path) -> Case:
    (model / "config.json").write_text("{model: degan, scale: x2")
    return Case(sr_args(good_png(tmp), out, model), [model / "config.json", "corrupt model config"])


def other_architecture(tmp: Path, model: Path, out: Path) -> Case:
    config = {"model": {"name": "degan_discriminator", "base_channels": 4}}
    (model / "config.json").write_text(json.dumps(config))
    expected = [model / "config.json", "not a super-resolution model", "degan_discriminator"]
    return Case(sr_args(good_png(tmp), out, model), expected)


def folder_with_one_bad_file(tmp: Path, model: Path, out: Path) -> Case:
    folder = tmp / "tiles"
    (folder / "sub").mkdir(parents=True)
    good_png(folder, "a.png")
    good_png(folder / "sub", "b.png")
    bad = folder / "sub" / "c.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    good_png(folder, "d.png")
    return Case([folder, "-o", out, "--model", model, "--scale", "2"], [bad, "JPEG", "corrupt"])


def huge_sparse_geotiff(tmp: Path, model: Path, out: Path) -> Case:
    """40,000 px square, almost all of it unwritten (sparse): 20 KB on disk, 6.4 gigapixels at x2."""
    src = tmp / "huge.tif"
    profile = {
        "driver": "GTiff", "width": 40_000, "height": 40_000, "count": 3, "dtype": "uint8",
        "crs": "EPSG:32633", "transform": Affine.translation(600_000, 5_340_000) @ Affine.scale(10, -10),
        "tiled": True, "sparse_ok": True, "compress": "deflate",
    }  # fmt: skip
    with rasterio.open(src, "w", **profile) as ds:
        ds.write(np.zeros((3, 16, 16), np.uint8), window=((0, 16), (0, 16)))
    args = [src, "-o", out / "result.tif", "--model", model, "--scale", "2"]
    return Case(args, [src, "80000x80000 px", "6.4 gigapixels", "--max-output"])


def folder_with_a_huge_scene(tmp: Path, model: Path, out: Path) -> Case:
    folder = tmp / "scenes"
    folder.mkdir()
    good_png(folder, "a.png", (40, 40))
    good_png(folder, "b.png", (8, 8))
    args = [folder, "-o", out, "--model", model, "--scale", "2", "--max-output", "0.000001"]
    return Case(args, [folder / "a.png", "80x80 px", "0.01 megapixels", "limit of 0.00 megapixels"])


CASES: list[Callable[[Path, Path, Path], Case]] = [
    missing_file,
    text_named_png,
    truncated_jpeg,
    zero_byte_file,
    one_pixel_image,
    complex_geotiff,
    palette_geotiff,
    scale_three,
    model_for_wrong_scale,
    truncated_checkpoint,
    garbage_config,
    other_architecture,
    folder_with_one_bad_file,
    huge_sparse_geotiff,
    folder_with_a_huge_scene,
]


# The cases that also run as a real process: a crash half-way through a folder (files already
# written must go), and a corrupt checkpoint (the deepest path: safetensors, torch).
PROCESS_CASES = [folder_with_one_bad_file, truncated_checkpoint]


def check_bad_input(
    make_case: Callable[[Path, Path, Path], Case],
    tmp_path: Path,
    tiny_model_dir: Path,
    run: Callable[..., CliResult],
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    model = shutil.copytree(tiny_model_dir, tmp_path / "model-x2")
    out = tmp_path / "out"
    case = make_case(inputs, model, out)
    result = run("sr", *case.args)
    assert result.code == case.code, result.stderr
    line = result.error_line()
    for text in case.expected:
        assert str(text) in line
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))


@pytest.mark.parametrize("make_case", CASES, ids=[f.__name__ for f in CASES])
def test_bad_input_is_one_clean_error_line(
    make_case: Callable[[Path, Path, Path], Case], tmp_path: Path, tiny_model_dir: Path
) -> None:
    check_bad_input(make_case, tmp_path, tiny_model_dir, run_cli)


@pytest.mark.parametrize("make_case", PROCESS_CASES, ids=[f.__name__ for f in PROCESS_CASES])
def test_bad_input_in_a_real_process(
    make_case: Callable[[Path, Path, Path], Case], tmp_path: Path, tiny_model_dir: Path
) -> None:
    check_bad_input(make_case, tmp_path, tiny_model_dir, run_cli_process)


def test_folder_mode_names_every_bad_input_before_writing_anything(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(textured_image((16, 16))).save(folder / "good.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "empty.tif").write_bytes(b"")
    out = tmp_path / "out"
    result = run_cli("sr", folder, "-o", out, "--model", tiny_model_dir, "--scale", "2", "-q")
    line = result.error_line()
    assert result.code == 1 and "2 of 3 files cannot be processed" in line
    assert "broken.png" in line and "empty.tif" in line
    assert not out.exists() or not any(out.rglob("*.*"))


def test_folder_mode_checks_the_output_format_of_every_file_first(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(textured_image((16, 16))).save(folder / "a_rgb.png")
    data = np.random.default_rng(0).integers(0, 255, (4, 16, 16), dtype=np.uint8)
    with rasterio.open(
        folder / "b_four.tif", "w", driver="GTiff", width=16, height=16, count=4, dtype="uint8"
    ) as ds:
        ds.write(data)
    out = tmp_path / "out"
    result = run_cli(
        "sr", folder, "-o", out, "--format", "jpg", "--model", tiny_model_dir, "--scale", "2", "-q"
    )
    assert result.code == 1 and "b_four.jpg" in result.error_line() and "write a .tif" in result.error_line()
    assert not out.exists() or not any(out.rglob("*.*"))


def test_a_jpeg_output_over_65500_px_is_refused_before_the_work(tiny_model_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "strip.png"
    Image.fromarray(np.zeros((2, 33000, 3), np.uint8)).save(src)
    out = tmp_path / "strip_x2.jpg"
    result = run_cli("sr", src, "-o", out, "--model", tiny_model_dir, "--scale", "2", "-q")
    assert result.code == 1 and "66000x4 px; JPEG holds at most 65500 px" in result.error_line()
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))
