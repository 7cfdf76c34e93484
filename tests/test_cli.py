"""The ``rsgen`` command line: every command, JSON output and usage errors (the demo: test_demo.py).

Commands run in-process through the console entry point (:func:`tests.conftest.run_cli`); one
test runs ``python -m rsgen`` in a fresh interpreter (:func:`tests.conftest.run_cli_process`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import Affine

from rsgen import device as device_module
from rsgen.shipped import available_models
from tests.conftest import REPO, CliResult, run_cli, run_cli_process, textured_image

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def invoke(*args: str | Path) -> CliResult:
    """Run ``rsgen ARGS`` and require success."""
    return run_cli(*args).ok()


def invoke_json(*args: str | Path) -> Any:
    return invoke(*args, "--json").json()


@pytest.fixture
def png(tmp_path: Path) -> Path:
    path = tmp_path / "tile.png"
    Image.fromarray(textured_image((12, 16))).save(path)
    return path


def test_sr_file_json(png: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "tile_x2.png"
    report = invoke_json("sr", png, "-o", out, "--model", tiny_model_dir, "--scale", "2", "-q")
    assert report["model"] == "tiny-x2" and report["device"] == "cpu"
    (item,) = report["results"]
    assert item["output"] == str(out) and (item["width"], item["height"]) == (32, 24)
    assert item["bands"] == 3 and item["scale"] == 2 and item["crs"] is None
    with Image.open(out) as image:
        assert image.size == (32, 24)


@pytest.mark.parametrize(
    ("flags", "args", "expected"),
    [
        ({"avx2"}, [], "fp32"),
        ({"avx512_bf16"}, [], "bf16"),
        ({"avx512_bf16"}, ["--precision", "fp32"], "fp32"),
        ({"avx2"}, ["--precision", "bf16"], "bf16"),
    ],
)
def test_sr_precision_auto_is_bf16_only_where_the_cpu_runs_it(
    png: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch, flags, args, expected
) -> None:
    monkeypatch.setattr(device_module, "_cpu_flags", lambda: flags)
    out = tmp_path / "x2.png"
    report = invoke_json("sr", png, "-o", out, "--model", tiny_model_dir, "-s", "2", "-q", *args)
    assert report["results"][0]["precision"] == expected


def test_sr_geotiff_reports_crs(tiny_model_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "scene.tif"
    transform = Affine.translation(600000.0, 5340000.0) @ Affine.scale(0.6, -0.6)
    profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 3, "dtype": "uint8"}
    with rasterio.open(src, "w", **profile, crs="EPSG:32633", transform=transform, photometric="RGB") as ds:
        ds.write(np.moveaxis(textured_image((8, 8)), -1, 0))
    report = invoke_json("sr", src, "-o", tmp_path / "x2.tif", "--model", tiny_model_dir, "-s", "2", "-q")
    assert report["results"][0]["crs"] == "EPSG:32633"
    with rasterio.open(tmp_path / "x2.tif") as ds:
        assert ds.res == pytest.approx((0.3, 0.3)) and ds.crs.to_epsg() == 32633


def test_sr_folder_json(image_folder: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = invoke_json(
        "sr", image_folder, "-o", out, "--model", tiny_model_dir, "--scale", "2", "--format", "tif", "-q"
    )
    outputs = sorted(Path(item["output"]).relative_to(out).as_posix() for item in report["results"])
    assert outputs == ["img0.tif", "img2.tif", "img4.tif", "sub/img1.tif", "sub/img3.tif", "sub/img5.tif"]
    assert all(item["width"] == 96 for item in report["results"])


def test_sr_folder_shards_by_rank(
    image_folder: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    inputs = []
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        report = invoke_json("sr", image_folder, "-o", tmp_path / "out", "--model", tiny_model_dir, "-s", "2")
        inputs += [item["input"] for item in report["results"]]
    assert sorted(inputs) == sorted(str(p) for p in image_folder.rglob("*.*"))


def test_eval_sr_json(image_folder: Path, tiny_model_dir: Path) -> None:
    report = invoke_json("eval", "sr", "--data", image_folder, "--model", tiny_model_dir, "--scale", "2")
    assert {"model", "bicubic", "num_images", "seconds_per_image"} <= set(report)
    assert report["num_images"] == 6 and report["scale"] == 2 and report["data"] == str(image_folder)
    assert 5 < report["bicubic"]["psnr_rgb"] < 60


@pytest.mark.parametrize(("scale", "params"), [(2, 6.99e6), (4, 7.58e6)])
def test_info_paper_params(scale: int, params: float) -> None:
    report = invoke_json("info", "degan-paper", "--scale", str(scale), "--size", "8")
    assert report["scale"] == scale and report["output"] == [8 * scale, 8 * scale]
    assert report["generator_params"] == pytest.approx(params, rel=0.1)
    assert report["generator_macs"] > 0 and report["discriminator_params"] > 0


def test_info_of_a_model_folder(tiny_model_dir: Path) -> None:
    report = invoke_json("info", tiny_model_dir, "--size", "8")
    assert report["scale"] == 2 and report["generator_params"] < 100_000
    assert "discriminator_params" not in report
    assert "generator" in invoke("info", tiny_model_dir, "--size", "8").stdout


def test_models_json() -> None:
    report = invoke_json("models")
    assert report["models"] == available_models()
    assert {"degan-paper", "degan-cpu"} <= set(report["configs"])


def test_curves(tmp_path: Path) -> None:
    records = [
        {"step": 1, "content": 0.5, "perceptual": 0.2, "d_loss": 1.3},
        {"step": 2, "content": 0.4, "perceptual": 0.1, "d_loss": 1.2},
        {"event": "eval", "step": 2, "val_psnr": 25.0, "val_psnr_bicubic": 24.0},
    ]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "curves.png"
    assert invoke("curves", tmp_path, "-o", out).stdout.strip() == str(out)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 100


@pytest.mark.parametrize(
    "command", [[], ["sr"], ["eval"], ["eval", "sr"], ["train"], ["info"], ["models"], ["curves"], ["demo"]]
)
def test_help(command: list[str]) -> None:
    assert "Usage" in invoke(*command, "--help").stdout


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["sr", "x.png", "-o", "y.png", "--scale", "abc"], 2, "Invalid value for '--scale'"),
        (["sr", "x.png", "-o", "y.png", "--tile", "0"], 2, "Invalid value for '--tile'"),
        (["sr", "x.png"], 2, "Missing option '-o'"),
        (["frobnicate"], 2, "No such command 'frobnicate'"),
        (["sr", "x.png", "-o", "y.png", "--scale", "3"], 1, "--scale must be 2 or 4, got 3"),
        (["sr", "x.png", "-o", "y.png", "--format", "bmp"], 1, "--format must be one of"),
        (["sr", str(REPO / "pyproject.toml"), "-o", "y.png", "--format", "tif"], 1, "--format is for folder"),
        (["info", "degan-paper", "--scale", "8"], 1, "--scale must be 2 or 4, got 8"),
        (["curves", "no-such-run"], 1, "no-such-run: training log not found"),
    ],
)
def test_errors_are_one_line(args: list[str], code: int, expected: str) -> None:
    result = run_cli(*args)
    assert result.code == code, result.stderr
    assert expected in result.error_line()


def test_main_without_arguments_prints_help() -> None:
    result = run_cli()
    assert "Usage" in result.stdout and "sr" in result.stdout and result.stderr == ""


def test_python_m_rsgen_stderr_is_clean(png: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    """The real process: nothing on stderr under ``-q`` (no library warnings), one JSON document."""
    out = tmp_path / "big.tif"
    result = run_cli_process("sr", png, "-o", out, "--model", tiny_model_dir, "-s", "2", "--json", "-q").ok()
    assert result.stderr == ""
    assert result.json()["results"][0]["output"] == str(out) and out.is_file()
    usage = run_cli_process("sr", png, "-o", out, "--scale", "abc")
    assert usage.code == 2 and "Invalid value for '--scale'" in usage.error_line()


def test_builtin_default_model(png: Path, tmp_path: Path) -> None:
    if "degan-x4" not in available_models():
        pytest.skip("the built-in degan-x4 model is not shipped in rsgen/weights yet")
    report = invoke_json("sr", png, "-o", tmp_path / "x4.png", "-q")
    assert report["model"] == "degan-x4"
    assert (report["results"][0]["width"], report["results"][0]["height"]) == (64, 48)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "message"), [(2, 130, "interrupted"), (15, 143, "terminated (SIGTERM)")]
)
def test_stopping_sr_midway_leaves_no_file_and_says_why(tmp_path: Path, signum: int, code: int, message: str):
    """Ctrl-C (SIGINT) and SIGTERM (timeout, docker stop) while the output is being written."""
    import signal
    import subprocess
    import sys
    import time

    src, out = tmp_path / "scene.png", tmp_path / "out"
    Image.fromarray(textured_image((600, 600), seed=3)).save(src)
    out.mkdir()
    cmd = [sys.executable, "-m", "rsgen", "sr", str(src), "-o", str(out / "sr.png"), "--scale", "4", "-q"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.monotonic() + 120
    while not any(out.iterdir()) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the job ended before it could be stopped"
    proc.send_signal(signal.Signals(signum))
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == code
    assert stderr.strip().splitlines() == [f"error: {message}"]
    assert list(out.iterdir()) == []


def test_help_keeps_every_bracketed_default():
    def help_text(*command: str) -> str:
        return " ".join(run_cli(*command, "--help").ok().stdout.split())  # undo the line wrapping

    sr_help = help_text("sr")
    assert "[default: degan-x<scale>]" in sr_help and "[default: 4]" in sr_help
    assert "[default: 256 / scale]" in sr_help
    assert "[default: $RSGEN_DATA/RSSCN7/val]" in help_text("eval", "sr")
    assert '"FD[X]"' in help_text("eval", "fid")
