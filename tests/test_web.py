"""The browser app (``rsgen serve``): its jobs on tiny models, its session folders, the command's
errors, and an end-to-end run of every tab in Debian's Chromium through Playwright.

``RSGEN_SCREENSHOTS=docs/web python -m pytest -q tests/test_web.py`` also writes a screenshot of
each tab there (the ones in the docs).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from PIL import Image

from rsgen.data.samples import FOREST, HOUSES, sample_path
from rsgen.errors import RsgenError
from rsgen.models import DEGANGenerator
from rsgen.web import jobs
from rsgen.web.jobs import ModelStore, WebOptions
from rsgen.web.session import SessionClosed, SessionFiles
from tests.conftest import REPO, TINY_MODEL, run_cli, textured_image
from tests.test_editing import TINY_TRAIN, scene
from tests.test_io_raster import TRANSFORM, write_tif
from tests.test_text_to_image import tiny_pipeline

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
HAVE_GRADIO = importlib.util.find_spec("gradio") is not None


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny models for every tab: a text-to-image pipeline, x2/x4 generators, an editing config."""
    root = tmp_path_factory.mktemp("web-models")
    out = {"t2i": tiny_pipeline().save_pretrained(root / "t2i")}
    for scale in (2, 4):
        torch.manual_seed(0)
        generator = DEGANGenerator.from_config({**TINY_MODEL, "scale": scale})
        out[f"x{scale}"] = generator.save_pretrained(root / f"x{scale}", dtype=torch.float32)
    out["edit"] = root / "tiny_single_image.yaml"
    out["edit"].write_text(yaml.safe_dump(TINY_TRAIN))
    return out


@pytest.fixture(scope="module")
def store(models: dict[str, Path]) -> ModelStore:
    return ModelStore(
        WebOptions(
            t2i_model=str(models["t2i"]),
            sr_models={2: str(models["x2"]), 4: str(models["x4"])},
            edit_train_config=str(models["edit"]),
            device="cpu",
        )
    )


def write_geotiff(path: Path, array: np.ndarray) -> Path:
    """An RGB GeoTIFF (EPSG:32633, 10 m pixels) of an (H, W, 3) uint8 array."""
    return write_tif(path, np.moveaxis(array, -1, 0), crs="EPSG:32633", transform=TRANSFORM)


# ---------------------------------------------------------------------- jobs


def test_generate_writes_images_and_a_sidecar_that_reproduces_them(store, tmp_path):
    out = jobs.generate(store, tmp_path, "a river", num_images=2, seed=7, steps=3, guidance=3.0, upscale=2)
    assert [p.name for p in out.images] == ["rsgen_7_0.png", "rsgen_7_1.png"]
    sidecar = json.loads(out.sidecar.read_text())
    assert sidecar["seed"] == 7 and sidecar["steps"] == 3 and sidecar["upscale"] == 2
    assert sidecar["files"] == ["rsgen_7_0.png", "rsgen_7_1.png"]
    first = Image.open(out.images[0])
    assert first.size == (sidecar["width"], sidecar["height"])
    again = jobs.generate(store, tmp_path / "again", "a river", num_images=1, seed=7, steps=3, guidance=3.0)
    small = np.asarray(Image.open(again.images[0]))
    assert small.shape[1] * 2 == first.width  # the x2 upscale doubled the size


def test_generate_refuses_bad_settings_and_a_missing_model(store, tmp_path, monkeypatch):
    with pytest.raises(RsgenError, match="prompt must be non-empty"):
        jobs.generate(store, tmp_path, "  ", steps=2)
    with pytest.raises(RsgenError, match="steps must be in 1..10"):
        jobs.generate(store, tmp_path, "a river", steps=99)
    with pytest.raises(RsgenError, match="at most 8 images"):
        jobs.generate(store, tmp_path, "a river", num_images=9, steps=2)
    monkeypatch.setattr("rsgen.pipelines.text_to_image.WEIGHTS_DIR", tmp_path.parent / "no-weights")
    missing = ModelStore(WebOptions(t2i_model="rsvq-cpu"))
    with pytest.raises(RsgenError, match="no trained text-to-image model is shipped"):
        missing.text_to_image_steps()
    assert list(tmp_path.iterdir()) == []


def test_super_resolve_keeps_a_geotiff_georeferenced_and_previews_match(store, tmp_path):
    source = write_geotiff(tmp_path / "scene.tif", textured_image((40, 48)))
    job = tmp_path / "job"
    job.mkdir()
    out = jobs.super_resolve(store, job, source, scale=2, tile=16)
    assert out.output.name == "scene_x2.tif"
    with rasterio.open(out.output) as ds:
        assert (ds.width, ds.height) == (96, 80) and ds.crs.to_epsg() == 32633
        assert ds.transform.a == pytest.approx(5.0) and ds.transform.c == pytest.approx(TRANSFORM.c)
    assert Image.open(out.before).size == Image.open(out.after).size == (96, 80)
    assert out.report["georeferenced"] and out.report["tile"] == 16


def test_uploads_that_are_not_images_or_too_big_are_refused(store, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(RsgenError, match="not a PNG, JPEG or TIFF"):
        jobs.check_image(text)
    big = tmp_path / "big.png"
    Image.fromarray(textured_image((64, 64))).save(big)
    with pytest.raises(RsgenError, match="at most 0.001 MP"):
        jobs.check_image(big, max_pixels=1000)
    with pytest.raises(RsgenError, match="scale must be one of x2, x4"):
        store.super_resolver(3)


def test_roi_fields_clicks_and_preview(tmp_path):
    assert jobs.parse_roi(0, 0, 0, 10) is None
    assert jobs.parse_roi(5, 6, 7, 8) == (5, 6, 7, 8)
    with pytest.raises(RsgenError, match="whole pixels"):
        jobs.parse_roi(1.5, 0, 4, 4)
    assert jobs.roi_from_corners((30, 40), (10, 5), 100, 100) == (10, 5, 21, 36)
    assert jobs.roi_from_corners((-5, 0), (500, 9), 100, 50) == (0, 0, 100, 10)
    path = tmp_path / "scene.png"
    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(path)
    array, step = jobs.roi_preview(path, (10, 10, 20, 20))
    assert step == 1 and tuple(array[10, 15]) == (255, 0, 0) and tuple(array[20, 20]) == (0, 0, 0)
    with pytest.raises(RsgenError, match="ROI"):
        jobs.roi_preview(path, (50, 10, 20, 20))


def test_edit_trains_once_then_uses_the_sessions_cache(store, tmp_path):
    source = tmp_path / "scene.png"
    Image.fromarray(scene()).save(source)
    cache = tmp_path / "cache"
    first = jobs.edit(store, tmp_path / "a", source, "a fire", (30, 30, 30, 30), seed=1, steps=2, cache=cache)
    assert first.report["model"].startswith("trained") and first.prompts[0] == "a fire"
    assert [p.name for p in first.files] == [
        "scene_edited.png",
        "scene_edited_before_after.png",
        "scene_edited.json",
    ]
    edited, original = np.asarray(Image.open(first.output)), scene()
    assert np.array_equal(edited[:20], original[:20])  # outside the ROI and its blend band
    second = jobs.edit(
        store, tmp_path / "b", source, "a fire", None, ensemble=False, seed=1, steps=2, cache=cache
    )
    assert second.report["model"] == "cached" and second.prompts == ["a fire"]
    with pytest.raises(RsgenError, match="prompt is empty"):
        jobs.edit(store, tmp_path / "c", source, " ", cache=cache)


def test_a_shipped_sample_is_copied_and_edited_with_its_shipped_model(store, tmp_path):
    forest = jobs.copy_sample(FOREST, tmp_path / "session")
    assert forest == tmp_path / "session" / "samples" / FOREST
    assert forest.read_bytes() == sample_path(FOREST).read_bytes()
    example = jobs.edit_example(FOREST)
    assert example is not None and jobs.edit_example(HOUSES) is None
    job, prompt, roi, cache = tmp_path / "job", example.prompt, example.roi, tmp_path / "cache"
    out = jobs.edit(store, job, forest, prompt, roi, ensemble=False, seed=0, steps=1, cache=cache)
    assert out.report["model"] == "shipped (editor-forest-256)" and out.report["seconds"]["train"] < 30
    assert not cache.exists()  # nothing trained
    with pytest.raises(RsgenError, match="no such sample image"):
        jobs.copy_sample("../pyproject.toml", tmp_path)


def test_a_large_scene_needs_an_roi_and_is_edited_in_a_window(store, tmp_path):
    source = tmp_path / "big.png"
    Image.fromarray(textured_image((60, 500))).save(source)
    with pytest.raises(RsgenError, match="by drawing an ROI"):
        jobs.edit(store, tmp_path, source, "a fire", cache=tmp_path / "cache")


# ---------------------------------------------------------------------- sessions


def test_session_folders_are_deleted_with_their_session_and_at_shutdown(tmp_path):
    files = SessionFiles(tmp_path / "root")
    job = files.job_folder("abc", "sr")
    (job / "out.png").write_bytes(b"x")
    upload = files.root / "f00d" / "scene.png"
    upload.parent.mkdir()
    upload.write_bytes(b"x")
    files.remember_upload("abc", upload)
    flag = files.cancel_flag("abc", "sr")
    other = files.job_folder("../other", "edit")
    assert other.parent.parent == files.root / "sessions"  # an odd session id cannot leave the root
    files.close("abc")
    assert flag.is_set() and not job.exists() and not upload.parent.exists()
    with pytest.raises(SessionClosed):
        files.folder("abc")
    late = files.root / "sessions" / "abc" / "sr-late"
    late.mkdir(parents=True)  # a job that wrote after its session ended
    files.finish("abc", late)
    assert not (files.root / "sessions" / "abc").exists() and other.exists()
    files.close_all()
    assert not files.root.exists()


@pytest.mark.skipif(not HAVE_GRADIO, reason="gradio is not installed (pip install 'rsgen[web]')")
def test_a_cancelled_jobs_progress_stops_it():
    import gradio as gr

    from rsgen.web.app import JobCancelled, cancellable, user_message

    flag = threading.Event()
    progress = cancellable(gr.Progress(), flag)
    progress.update(1)
    progress((1, 10))
    flag.set()
    with pytest.raises(JobCancelled):
        progress.update(1)
    error = RsgenError("not a PNG, JPEG or TIFF image", "/tmp/rsgen-web-x/ab12/notes.png")
    assert user_message(error) == "notes.png: not a PNG, JPEG or TIFF image"
    assert user_message(ValueError("bad\nvalue")) == "ValueError: bad value"


@pytest.mark.skipif(not HAVE_GRADIO, reason="gradio is not installed (pip install 'rsgen[web]')")
def test_a_cancelled_job_stops_even_when_the_next_one_starts_before_its_next_tick(tmp_path):
    """Cancel, then Run again at once: the new job must not un-cancel the old one, still
    between two progress ticks (a slow training or sampling step)."""
    import gradio as gr

    from rsgen.web.app import _Jobs

    runner, request = _Jobs(SessionFiles(tmp_path / "root"), None), gr.Request()
    request.session_hash = "abc"  # type: ignore[misc]
    started, tick, outcome = threading.Event(), threading.Event(), []

    def slow(job: Path) -> str:
        started.set()
        tick.wait(10)  # a long step: the user cancels and runs again meanwhile
        progress.update(1)
        return "finished"

    def first() -> None:
        try:
            outcome.append(runner.run(request, "sr", progress, slow))
        except gr.Error as exc:
            outcome.append(exc.message)

    progress = gr.Progress()
    worker = threading.Thread(target=first)
    worker.start()
    assert started.wait(10)
    runner.files.cancel("abc", "sr")  # Cancel
    assert runner.run(request, "sr", gr.Progress(), lambda job: "second") == "second"  # Run again
    tick.set()
    worker.join(10)
    assert outcome == ["cancelled"]
    assert [p.name[:3] for p in (tmp_path / "root" / "sessions" / "abc").iterdir()] == ["sr-"]


# ---------------------------------------------------------------------- the command


def test_serve_refuses_a_port_in_use_in_one_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = run_cli("serve", "--port", port).error_line()
    assert line == f"error: port {port} on 127.0.0.1 is in use; choose another with --port"


def test_serve_without_gradio_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a)
    )
    result = run_cli("serve")
    assert result.code == 1
    assert result.error_line() == 'error: the web app needs gradio: pip install "rsgen[web]"'


def test_serve_option_checks():
    from rsgen.cli.serve import _is_loopback

    assert run_cli("serve", "--max-file-size", "lots").error_line().startswith("error: --max-file-size")
    assert _is_loopback("127.0.0.1") and _is_loopback("localhost") and _is_loopback("::1")
    assert not _is_loopback("0.0.0.0")


# ---------------------------------------------------------------------- in a real browser


def _browser_missing() -> str | None:
    if not HAVE_GRADIO:
        return "gradio is not installed (pip install 'rsgen[web]')"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install playwright)"
    if not CHROMIUM.is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver)"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """``rsgen serve`` on tiny models in a child process; its temp folder under ``tmp``."""
    reason = _browser_missing()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("serve-tmp")
    port = _free_port()
    args = [
        sys.executable, "-m", "rsgen", "serve", "--port", str(port),
        "--t2i-model", str(models["t2i"]), "--sr-x2-model", str(models["x2"]),
        "--sr-x4-model", str(models["x4"]), "--edit-train-config", str(models["edit"]),
        "--edit-train-steps", "4", "--max-file-size", "1mb", "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "TMPDIR": str(tmp), "RSGEN_CACHE": str(tmp / "user-cache")}
    log = (tmp_path_factory.mktemp("serve-log") / "serve.log").open("w+")
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_for(url, proc, log)
        yield {"url": url, "tmp": tmp, "proc": proc, "log": log}
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
        if proc.poll() is None:
            proc.kill()
        log.close()


def _wait_for(url: str, proc: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            pytest.fail(f"rsgen serve exited {proc.returncode}:\n{log.read()[-3000:]}")
        with contextlib.suppress(OSError):
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return
        time.sleep(1)
    pytest.fail("rsgen serve did not answer within 180 s")


@pytest.fixture(scope="module")
def browser(server: dict) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@contextlib.contextmanager
def _open_page(browser, url: str) -> Iterator:
    """The app in a new browser context (its own cookies, so its own session); closed after."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 1100})
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    tab.goto(url)
    tab.get_by_role("tab", name="Generate").wait_for()
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture
def page(browser, server: dict) -> Iterator:
    with _open_page(browser, server["url"]) as tab:
        yield tab


def _screenshot(page, name: str) -> None:
    folder = os.environ.get("RSGEN_SCREENSHOTS")
    if folder:
        target = Path(folder) if Path(folder).is_absolute() else REPO / folder
        target.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target / f"{name}.png"), full_page=True)


def _download(page, link_selector: str, tmp: Path) -> Path:
    with page.expect_download() as info:
        page.locator(link_selector).first.click()
    target = tmp / info.value.suggested_filename
    info.value.save_as(target)
    assert target.stat().st_size > 0
    return target


def _expect_error(page, text: str) -> None:
    page.get_by_text(text).first.wait_for(state="visible", timeout=30_000)


def _close_toasts(page) -> None:
    for button in page.locator(".toast-close").all():
        with contextlib.suppress(Exception):
            button.click(timeout=2000)


@pytest.mark.slow
def test_every_tab_in_chromium(page, server, tmp_path):
    """Generate, Super-resolve and Edit through the page: results appear and download, a bad
    request or upload shows its error and the next request works."""
    # --- Generate: an empty prompt fails in the page, the next request works
    page.locator("#gen-prompt textarea").fill("  ")
    page.get_by_role("button", name="Generate", exact=True).click()
    _expect_error(page, "prompt must be non-empty")
    _close_toasts(page)
    page.locator("#gen-prompt textarea").fill("a river between fields")
    page.get_by_role("button", name="Generate", exact=True).click()
    page.locator("#gen-gallery img").first.wait_for(state="visible", timeout=120_000)
    assert _download(page, "#gen-files a[download]", tmp_path).suffix in (".png", ".json")
    _screenshot(page, "generate")

    # --- Super-resolve: a non-image and an oversized upload are refused, then a GeoTIFF works
    page.get_by_role("tab", name="Super-resolve").click()
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page.locator("#sr-upload input[type=file]").set_input_files(str(bad))
    _expect_error(page, "not a PNG, JPEG or TIFF")
    _close_toasts(page)
    page.reload()
    page.get_by_role("tab", name="Super-resolve").click()
    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(1_200_000))
    page.locator("#sr-upload input[type=file]").set_input_files(str(huge))
    _expect_error(page, "exceed the maximum allowed size")
    _close_toasts(page)
    page.reload()
    page.get_by_role("tab", name="Super-resolve").click()
    source = write_geotiff(tmp_path / "scene.tif", textured_image((48, 64)))
    page.locator("#sr-upload input[type=file]").set_input_files(str(source))
    page.get_by_text("georeferenced").first.wait_for()
    page.get_by_role("radio", name="2").check()
    page.get_by_role("button", name="Super-resolve", exact=True).click()
    page.locator("#sr-slider img").first.wait_for(state="visible", timeout=120_000)
    result = _download(page, "#sr-file a[download]", tmp_path)
    with rasterio.open(result) as ds:
        assert (ds.width, ds.height) == (128, 96) and ds.crs.to_epsg() == 32633
    _screenshot(page, "super-resolve")

    # --- Edit: upload, two clicks draw the ROI, the model trains, the result downloads
    page.get_by_role("tab", name="Edit").click()
    picture = tmp_path / "field.png"
    Image.fromarray(scene()).save(picture)
    page.locator("#edit-upload input[type=file]").set_input_files(str(picture))
    image = page.locator("#edit-roi-image img").first
    image.wait_for(state="visible")
    box = image.bounding_box()
    assert box is not None
    for fx, fy in ((0.3, 0.3), (0.65, 0.7)):
        image.click(position={"x": box["width"] * fx, "y": box["height"] * fy})
        page.wait_for_timeout(1000)
    roi_w = page.locator("#edit-roi-w input").input_value()
    assert int(roi_w) > 10, roi_w
    page.locator("#edit-prompt textarea").fill("a fire in the forest")
    page.locator("#edit-prompt textarea").press("Enter")
    page.get_by_role("button", name="Edit", exact=True).click()
    page.locator("#edit-slider img").first.wait_for(state="visible", timeout=180_000)
    assert "a fire in the forest" in page.locator("#edit-prompts textarea").input_value()
    assert _download(page, "#edit-files a[download]", tmp_path).stat().st_size > 0
    _screenshot(page, "edit")


@pytest.mark.slow
def test_shipped_samples_load_in_chromium(page, tmp_path):
    """The sample buttons: a scene to super-resolve, and the forest with its prompt and ROI."""
    page.get_by_role("tab", name="Super-resolve").click()
    page.locator("#sr-sample-0").click()
    page.get_by_text(f"{HOUSES}: 256x256 px").first.wait_for()
    page.get_by_role("radio", name="2").check()
    page.get_by_role("button", name="Super-resolve", exact=True).click()
    page.locator("#sr-slider img").first.wait_for(state="visible", timeout=120_000)
    with Image.open(_download(page, "#sr-file a[download]", tmp_path)) as result:
        assert result.size == (512, 512)
    page.get_by_role("tab", name="Edit").click()
    page.locator("#edit-sample-0").click()
    page.get_by_text(f"{FOREST}: 256x256 px").first.wait_for()
    page.locator("#edit-roi-image img").first.wait_for(state="visible")
    assert page.locator("#edit-prompt textarea").input_value() == "a fire in the forest"
    roi = [page.locator(f"#edit-roi-{n} input").input_value() for n in "xywh"]
    assert roi == ["64", "64", "128", "128"]


def _web_root(server: dict) -> Path:
    """The server's one ``rsgen-web-*`` temp folder."""
    (root,) = server["tmp"].glob("rsgen-web-*")
    return root


def _wait_until(check: Callable[[], object], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.25)


def _served_file(page, link_selector: str, root: Path) -> Path:
    """The server file behind a download link (its ``/file=<path>`` URL), relative to ``root``."""
    href = page.locator(link_selector).first.get_attribute("href") or ""
    path = Path(urllib.parse.unquote(urllib.parse.urlparse(href).path).split("file=", 1)[-1])
    assert path.is_relative_to(root), href
    return path.relative_to(root)


def _grid(side: int) -> np.ndarray:
    """A ``side`` px RGB pattern that PNG compresses to a few tens of KB (under the upload limit)."""
    y, x = np.mgrid[0:side, 0:side]
    return np.stack([(x // 6) % 256, (y // 6) % 256, ((x + y) // 12) % 256], -1).astype(np.uint8)


@pytest.mark.slow
def test_cancel_stops_the_job_and_the_next_request_works(page, server, tmp_path):
    """Cancel midway through a long super-resolution (8649 tiles of 32 px): the page says
    cancelled, the worker stops (its job folder and partial output are deleted, no output ever
    appears), and the next request in the same page works."""
    root = _web_root(server)
    big = tmp_path / "wide.png"
    Image.fromarray(_grid(1500)).save(big)
    page.get_by_role("tab", name="Super-resolve").click()
    page.locator("#sr-upload input[type=file]").set_input_files(str(big))
    page.get_by_text("wide.png: 1500x1500 px").first.wait_for()
    page.get_by_role("radio", name="2").check()
    page.get_by_label("Tile (input px)").click()
    page.get_by_role("option", name="32", exact=True).click()
    before = set(root.glob("sessions/*/sr-*"))
    page.get_by_role("button", name="Super-resolve", exact=True).click()
    page.locator("#sr-slider .progress-text").filter(has_text="tile").wait_for(timeout=60_000)
    (job,) = set(root.glob("sessions/*/sr-*")) - before  # this request's folder, while it runs
    assert all(p.name.endswith(".tmp") for p in job.iterdir()), list(job.iterdir())  # partial only
    page.get_by_role("button", name="Cancel").first.click()
    _expect_error(page, "cancelled")
    _wait_until(lambda: not job.exists(), f"the worker stops and deletes {job}")  # at its next tile
    toasts = page.locator(".toast-body").all_inner_texts()
    assert not any("Error" in text for text in toasts), toasts  # a message, not a failure
    time.sleep(2)
    assert not list(root.rglob("wide_x2*")) and not list(root.rglob(".wide_x2*"))
    assert page.locator("#sr-slider img").count() == 0 and page.locator("#sr-file a[download]").count() == 0
    _close_toasts(page)

    page.locator("#sr-sample-0").click()  # the next request, in the same page and session
    page.get_by_text(f"{HOUSES}: 256x256 px").first.wait_for()
    page.get_by_role("button", name="Super-resolve", exact=True).click()
    page.locator("#sr-slider img").first.wait_for(state="visible", timeout=120_000)
    with Image.open(_download(page, "#sr-file a[download]", tmp_path)) as result:
        assert result.size == (512, 512)
    served = _served_file(page, "#sr-file a[download]", root)
    assert served.parts[:2] == job.relative_to(root).parts[:2]  # sessions/<this session>
    assert [p.name for p in (root / served.parent.parent).glob("sr-*")] == [served.parent.name]
    assert not list(root.rglob("wide_x2*"))


@pytest.mark.slow
def test_two_users_at_once_keep_their_own_files(browser, server, tmp_path):
    """Two browser sessions super-resolve their own GeoTIFFs at the same time: both get their
    result, each in its own session folder; closing one deletes its folder and upload while the
    other's result still downloads and the server keeps serving."""
    root = _web_root(server)
    with contextlib.ExitStack() as stack:
        pages, names = {}, {"alice": (40, 56), "bob": (48, 32)}
        for name in names:
            pages[name] = stack.enter_context(_open_page(browser, server["url"]))
        for name, (height, width) in names.items():
            tab = pages[name]
            source = write_geotiff(tmp_path / f"{name}.tif", textured_image((height, width)))
            tab.get_by_role("tab", name="Super-resolve").click()
            tab.locator("#sr-upload input[type=file]").set_input_files(str(source))
            tab.get_by_text(f"{name}.tif: {width}x{height} px").first.wait_for()
            tab.get_by_role("radio", name="2").check()
        for tab in pages.values():  # both submit before either finishes
            tab.get_by_role("button", name="Super-resolve", exact=True).click()
        served = {}
        for name, (height, width) in names.items():
            tab = pages[name]
            tab.locator("#sr-slider img").first.wait_for(state="visible", timeout=120_000)
            (tmp_path / name).mkdir()
            with rasterio.open(_download(tab, "#sr-file a[download]", tmp_path / name)) as ds:
                assert (ds.width, ds.height) == (2 * width, 2 * height) and ds.crs.to_epsg() == 32633
            served[name] = _served_file(tab, "#sr-file a[download]", root)
            assert served[name].parts[0] == "sessions" and served[name].name == f"{name}_x2.tif"
        alice, bob = (root / served[n].parts[0] / served[n].parts[1] for n in names)
        assert alice != bob and (root / served["bob"]).is_file()
        assert [p.parent.parent for p in root.glob("*/alice.tif")] == [root]  # Gradio's upload copy

        pages.pop("alice").context.close()
        _wait_until(lambda: not alice.exists() and not list(root.rglob("alice*")), "alice's files go")
        assert bob.is_dir() and list(root.glob("*/bob.tif"))
        tab = pages["bob"]
        (tmp_path / "again").mkdir()
        again = _download(tab, "#sr-file a[download]", tmp_path / "again")
        assert again.read_bytes() == (root / served["bob"]).read_bytes()
        tab.get_by_role("tab", name="Generate").click()
        tab.locator("#gen-prompt textarea").fill("a river between fields")
        tab.get_by_role("button", name="Generate", exact=True).click()
        tab.locator("#gen-gallery img").first.wait_for(state="visible", timeout=120_000)
        assert _served_file(tab, "#gen-files a[download]", root).parts[:2] == bob.relative_to(root).parts
    assert server["proc"].poll() is None


@pytest.mark.slow
def test_session_files_are_gone_after_the_tab_closes_and_the_server_stops(browser, server):
    """Runs after the tab test: its pages are closed, so their session folders are gone."""
    roots = list(server["tmp"].glob("rsgen-web-*"))
    assert len(roots) == 1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any((roots[0] / "sessions").glob("*/*")):
        time.sleep(1)
    assert not any((roots[0] / "sessions").glob("*/*")), list((roots[0] / "sessions").rglob("*"))
    server["proc"].terminate()
    server["proc"].wait(60)
    assert not roots[0].exists()
    assert not (server["tmp"] / "user-cache").exists()  # the editing models stayed in the session
