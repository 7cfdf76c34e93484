"""``rsgen demo`` and the shipped samples: the demo end to end on a tiny text-to-image pipeline, a
tiny x2 generator and the shipped forest editor (``--quick`` edit settings), its page and files,
the GeoTIFF round trip, and the note when no text-to-image model is available."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image

from rsgen.data.samples import (
    EDIT_EXAMPLES,
    FOREST,
    HOUSES,
    SAMPLES_DIR,
    STORAGE_TANKS,
    list_samples,
    load_sample,
    sample_path,
)
from rsgen.errors import RsgenError
from rsgen.models import DEGANGenerator
from rsgen.pipelines.demo import DEFAULT_EDITOR
from rsgen.pipelines.editor import Editor, shipped_editor
from rsgen.shipped import WEIGHTS_DIR, available_models
from rsgen.train.tasks.single_image import image_sha256
from tests.conftest import TINY_MODEL, CliResult, run_cli
from tests.test_text_to_image import tiny_pipeline

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

STEPS = ["generate", "upscale", "edit", "geo_sr"]


# ---------------------------------------------------------------------- samples


def test_samples_ship_small_aerial_and_documented() -> None:
    assert set(list_samples()) == {FOREST, HOUSES, STORAGE_TANKS}
    total = sum(sample_path(name).stat().st_size for name in list_samples())
    assert total < 400_000
    source = (SAMPLES_DIR / "SOURCE.md").read_text()
    for name in list_samples():
        assert name in source
        image = load_sample(name)
        assert image.shape == (256, 256, 3) and image.dtype == np.uint8 and image.std() > 10
    assert "no license" in source.lower()


def test_edit_examples_fit_their_samples() -> None:
    for example in EDIT_EXAMPLES:
        x, y, w, h = example.roi
        height, width = load_sample(example.sample).shape[:2]
        assert min(x, y) >= 0 and x + w <= width and y + h <= height and example.prompt


def test_unknown_sample_is_a_one_line_error() -> None:
    with pytest.raises(RsgenError, match="no such sample image .*forest_256.png"):
        sample_path("nope.png")


def test_the_forest_sample_is_the_shipped_editors_image() -> None:
    assert DEFAULT_EDITOR in available_models()
    folder = WEIGHTS_DIR / DEFAULT_EDITOR
    stored = json.loads((folder / "model_index.json").read_text())["image"]["sha256"]
    with Image.open(sample_path(FOREST)) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert image_sha256(pixels) == stored
    assert shipped_editor(pixels) == folder
    assert shipped_editor(load_sample(HOUSES)) is None
    editor = Editor.from_pretrained(DEFAULT_EDITOR, image=pixels, progress=False)
    assert editor.sizes[-1] == (256, 256)
    with pytest.raises(RsgenError, match="trained on another image"):
        Editor.from_pretrained(DEFAULT_EDITOR, image=load_sample(HOUSES), progress=False)


# ---------------------------------------------------------------------- the demo


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny text-to-image pipeline (16 px images, 10 timesteps) and a tiny x2 generator."""
    root = tmp_path_factory.mktemp("demo-models")
    torch.manual_seed(0)
    generator = DEGANGenerator.from_config({**TINY_MODEL, "scale": 2})
    return {
        "t2i": tiny_pipeline().save_pretrained(root / "tiny-t2i"),
        "sr": generator.save_pretrained(root / "tiny-x2", dtype=torch.float32),
    }


def run_demo_cli(out: Path, models: dict[str, Path], *extra: str | Path) -> CliResult:
    sr = ("--model", models["sr"], "--scale", "2", "--size", "64")
    return run_cli("demo", "-o", out, *sr, "--quick", "--json", *extra)


@pytest.fixture(scope="module")
def demo(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The demo run once with every step: its folder and its JSON."""
    out = tmp_path_factory.mktemp("demo") / "out"
    result = run_demo_cli(out, tiny_models, "--t2i-model", tiny_models["t2i"]).ok()
    return out, result.json()


def step(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in report["steps"] if s["name"] == name)


def test_demo_runs_every_step_and_writes_its_files(demo: tuple[Path, Any]) -> None:
    out, report = demo
    assert [s["name"] for s in report["steps"]] == STEPS
    assert all(s["skipped"] is None and s["seconds"] > 0 for s in report["steps"])
    assert report["notes"] == [] and report["seconds_total"] > 0
    assert json.loads((out / "demo.json").read_text()) == report
    for step_report in report["steps"]:
        for figure in step_report["figures"]:
            assert (out / figure["path"]).is_file(), figure
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.format == "PNG" and sheet.width > 200 and sheet.height > 4 * 100


def test_demo_generates_and_upscales(demo: tuple[Path, Any]) -> None:
    out, report = demo
    generate = step(report, "generate")
    assert len(generate["figures"]) == len(generate["settings"]["prompts"]) == 4
    assert generate["settings"]["seed"] == 0 and generate["settings"]["size"] == [16, 16]
    upscale = step(report, "upscale")
    assert upscale["settings"]["input_size"] == [16, 16] and upscale["settings"]["output_size"] == [32, 32]
    with Image.open(out / upscale["figures"][-1]["path"]) as image:
        assert image.size == (32, 32)


def test_demo_edit_is_confined_to_the_roi_and_scored(demo: tuple[Path, Any]) -> None:
    out, report = demo
    edit = step(report, "edit")
    assert edit["settings"]["model"] == DEFAULT_EDITOR and edit["settings"]["roi"] == [64, 64, 128, 128]
    assert edit["settings"]["prompt"] == "a fire in the forest" and edit["settings"]["seed"] == 0
    assert edit["scores"]["pixels_changed_outside_roi_and_band"] == 0
    clip = edit["scores"]["clip_score"]["rs-clip"]
    assert set(clip) == {"before", "after", "gain"} and 0 <= clip["before"] <= 100
    edited = np.asarray(Image.open(out / "edit" / "edited.png"))
    original = load_sample(FOREST)
    assert edited.shape == original.shape
    assert np.array_equal(edited[:40], original[:40])  # far outside the ROI: the input's bytes


def test_demo_geotiff_keeps_its_georeferencing(demo: tuple[Path, Any]) -> None:
    out, report = demo
    geo = step(report, "geo_sr")
    assert geo["settings"]["hr_size"] == [64, 64] and geo["settings"]["lr_size"] == [32, 32]
    assert isinstance(geo["scores"]["psnr_model"], float) and 10 < geo["scores"]["psnr_bicubic"] < 60
    reference = geo["scores"]["sr_georeferencing"]
    assert reference["crs"] == "EPSG:32633" and reference["pixel_size"] == pytest.approx([0.6, 0.6])
    with rasterio.open(out / geo["files"]["lr"]) as lr, rasterio.open(out / geo["files"]["sr"]) as sr:
        assert lr.crs == sr.crs and str(sr.crs) == "EPSG:32633"
        assert lr.res == pytest.approx((1.2, 1.2)) and sr.res == pytest.approx((0.6, 0.6))
        assert lr.bounds == pytest.approx(sr.bounds) and (sr.width, sr.height) == (64, 64)


def test_demo_page_is_self_contained_with_relative_links(demo: tuple[Path, Any]) -> None:
    out, report = demo
    page = (out / "index.html").read_text()
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(links) >= 20 and "<script" not in page
    for link in links:
        assert "://" not in link and not link.startswith("/"), link
        assert (out / link).is_file(), link
    for text in ("a fire in the forest", "psnr_model", "EPSG:32633", "clip_score.rs-clip.after"):
        assert text in page
    assert "geo_sr/sr.tif" in page and "Skipped" not in page


def test_demo_text_summary(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    sr = ("--model", tiny_models["sr"], "--scale", "2", "--size", "32")
    result = run_cli("demo", "-o", tmp_path / "d", *sr, "--quick", "--t2i-model", tiny_models["t2i"]).ok()
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:4]] == STEPS
    assert "PSNR" in lines[3] and "EPSG:32633" in lines[3] and "CLIP" in lines[2]
    assert lines[-1] == f"open:     {tmp_path / 'd' / 'index.html'}"
    assert "generate: 4 prompts" in result.stderr  # progress goes to stderr


def test_demo_without_a_text_to_image_model_notes_it_and_runs_the_rest(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No shipped rsvq-cpu (and no shared data): steps 1-2 skipped with a note, the rest run."""
    monkeypatch.setattr("rsgen.pipelines.text_to_image.WEIGHTS_DIR", tmp_path / "no-weights")
    monkeypatch.setenv("RSGEN_DATA", str(tmp_path / "no-data"))
    out = tmp_path / "demo"
    result = run_demo_cli(out, tiny_models).ok()
    report = result.json()
    assert "note: text-to-image skipped: no text-to-image model is shipped" in result.stderr
    assert "--t2i-model DIR" in result.stderr
    assert [s["skipped"] is not None for s in report["steps"]] == [True, True, False, False]
    (note,) = report["notes"]
    assert note.startswith("Text to image and Super-resolution") and "rsvq-cpu" in note
    page = (out / "index.html").read_text()
    assert page.count('class="note"') == 3 and "Skipped: no text-to-image model is shipped" in page
    assert not (out / "generate").exists() and (out / "geo_sr" / "sr.tif").is_file()
    assert (out / "contact_sheet.png").is_file()


def test_demo_with_a_missing_editor_fails_before_writing(tiny_models: dict[str, Path], tmp_path):
    out = tmp_path / "demo"
    result = run_cli("demo", "-o", out, "--model", tiny_models["sr"], "-s", "2", "--editor-model", "nope")
    assert result.code == 1 and "nope: no such model folder or built-in model" in result.error_line()
    assert not out.exists()


def test_demo_with_a_missing_t2i_model_fails_in_one_line(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "demo"
    result = run_cli(
        "demo", "-o", out, "--model", tiny_models["sr"], "-s", "2", "--t2i-model", tmp_path / "nope"
    )
    assert result.code == 1 and "no such model folder" in result.error_line()
    assert not out.exists()
