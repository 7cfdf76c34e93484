"""evaluate_sr on tiny generated images (and a few RSSCN7 images when available)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from rsgen.cli.tables import format_sr_table, print_sr_table
from rsgen.data.degradation import bicubic_upscale, crop_to_multiple
from rsgen.errors import RsgenError
from rsgen.metrics import SREvalResult, evaluate_sr

RSSCN7_VAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "RSSCN7" / "val"
SCORE_KEYS = {"psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y"}


def _write_images(folder: Path, count: int = 2, size: tuple[int, int] = (50, 46)) -> list[Path]:
    """Write ``count`` smooth textured RGB PNGs of ``size`` (width, height)."""
    rng = np.random.default_rng(0)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    paths = []
    for i in range(count):
        channels = [
            127 + 100 * np.sin(xx / (3 + i + c) + yy / (5 + c)) + rng.normal(0, 5, (height, width))
            for c in range(3)
        ]
        img = np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)
        path = folder / f"img{i}.png"
        Image.fromarray(img).save(path)
        paths.append(path)
    return paths


def _bicubic_fn(scale: int):
    return lambda lr: np.asarray(bicubic_upscale(Image.fromarray(lr), scale))


def _gray_fn(scale: int):
    return lambda lr: np.full((lr.shape[0] * scale, lr.shape[1] * scale, 3), 128, np.uint8)


def test_bicubic_as_model_gives_zero_gain(tmp_path: Path) -> None:
    paths = _write_images(tmp_path)
    result = evaluate_sr(paths, 4, _bicubic_fn(4), "bicubic-again", progress=False)
    assert result.num_images == 2 and result.scale == 4
    assert result.model == result.bicubic
    assert result.gain_db_rgb == 0.0 and result.gain_db_y == 0.0
    assert 10 < result.bicubic.psnr_rgb < 50 and 0 < result.bicubic.ssim_y < 1
    # crop_to_multiple: 50x46 -> 48x44 at x4.
    assert (result.per_image[0]["width"], result.per_image[0]["height"]) == (48, 44)
    assert result.seconds_per_image == pytest.approx(np.mean([p["seconds"] for p in result.per_image]))


def test_bad_upscaler_gives_negative_gain(tmp_path: Path) -> None:
    paths = _write_images(tmp_path)
    result = evaluate_sr(paths, 2, _gray_fn(2), "gray", progress=True)
    assert result.gain_db_rgb < -3 and result.gain_db_y < -3
    assert result.model.ssim_rgb < result.bicubic.ssim_rgb


def test_to_dict_is_strict_json(tmp_path: Path) -> None:
    paths = _write_images(tmp_path)
    result = evaluate_sr(paths, 2, _gray_fn(2), "gray", progress=False)
    data = result.to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert set(data) == {
        "scale",
        "num_images",
        "model_name",
        "seconds_per_image",
        "model",
        "bicubic",
        "gain_db_rgb",
        "gain_db_y",
        "per_image",
    }
    assert set(data["model"]) == SCORE_KEYS and set(data["bicubic"]) == SCORE_KEYS
    assert data["gain_db_rgb"] == pytest.approx(result.gain_db_rgb, abs=1e-4)
    assert len(data["per_image"]) == 2 and data["per_image"][1]["path"] == str(paths[1])
    assert set(data["per_image"][0]["model"]) == SCORE_KEYS


def test_exact_reconstruction_gives_null_psnr_in_json(tmp_path: Path) -> None:
    (path,) = _write_images(tmp_path, count=1)
    hr = np.asarray(crop_to_multiple(Image.open(path).convert("RGB"), 2))
    result = evaluate_sr([path], 2, lambda lr: hr.copy(), "oracle", progress=False)
    assert result.model.psnr_rgb == math.inf
    data = result.to_dict()
    json.dumps(data, allow_nan=False)
    assert data["model"]["psnr_rgb"] is None and data["gain_db_rgb"] is None
    assert data["model"]["ssim_rgb"] == 1.0


def test_wrong_output_shape_or_dtype_names_the_image(tmp_path: Path) -> None:
    paths = _write_images(tmp_path)
    with pytest.raises(ValueError, match=r"img0\.png.*shape"):
        evaluate_sr(paths, 2, _bicubic_fn(4), "wrong-scale", progress=False)
    with pytest.raises(ValueError, match=r"img0\.png.*dtype"):
        evaluate_sr(paths, 2, lambda lr: _bicubic_fn(2)(lr).astype(np.float32), "float", progress=False)


def test_unreadable_or_too_small_image_raises_rsgen_error(tmp_path: Path) -> None:
    good = _write_images(tmp_path, count=1)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(RsgenError, match="broken.png") as info:
        evaluate_sr([*good, broken], 2, _bicubic_fn(2), "m", progress=False)
    assert info.value.path == str(broken)
    with pytest.raises(RsgenError, match="missing.png"):
        evaluate_sr([tmp_path / "missing.png"], 2, _bicubic_fn(2), "m", progress=False)
    (tmp_path / "tiny").mkdir()
    (tiny,) = _write_images(tmp_path / "tiny", count=1, size=(16, 16))
    with pytest.raises(RsgenError, match="needs at least"):
        evaluate_sr([tiny], 4, _bicubic_fn(4), "m", progress=False)
    with pytest.raises(RsgenError, match="no HR images"):
        evaluate_sr([], 4, _bicubic_fn(4), "m", progress=False)


def test_table_has_both_rows_and_a_caption(tmp_path: Path) -> None:
    paths = _write_images(tmp_path)
    result = evaluate_sr(paths, 2, _gray_fn(2), "my-model", progress=False)
    table = format_sr_table(result)
    assert table.row_count == 2
    console = Console(record=True, width=140)
    print_sr_table(result, console)
    text = console.export_text()
    assert "bicubic" in text and "my-model" in text and "PSNR Y" in text
    assert "2 images" in text and "x2" in text and f"{result.gain_db_rgb:+.2f} dB" in text


def test_bicubic_on_rsscn7_is_plausible() -> None:
    if not RSSCN7_VAL.is_dir():
        pytest.skip(f"RSSCN7 validation set not found at {RSSCN7_VAL}")
    paths = sorted(p for p in RSSCN7_VAL.rglob("*") if p.suffix.lower() in {".jpg", ".png", ".tif"})[:3]
    if len(paths) < 3:
        pytest.skip(f"fewer than 3 images in {RSSCN7_VAL}")
    result: SREvalResult = evaluate_sr(paths, 4, _bicubic_fn(4), "bicubic", progress=False)
    for item in result.per_image:
        assert 20 < item["bicubic"]["psnr_rgb"] < 40
        assert 20 < item["bicubic"]["psnr_y"] < 40
    assert result.gain_db_y == 0.0
