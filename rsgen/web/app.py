"""The browser app of ``rsgen serve``: Generate, Super-resolve and Edit tabs (Gradio Blocks).

>>> app = create_app(t2i_model="path/to/pipeline", edit_train_steps=500)
>>> app.launch("127.0.0.1", 7860)            # blocks until Ctrl-C; app.close() cleans up

The page calls :mod:`rsgen.web.jobs` (the CLI's Python API); this module only lays out the
page and turns each request into a job: the session's own folder, cancel flag and progress,
one-line errors in the page (``gr.Error``). Heavy jobs share one queue slot per core.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr

from rsgen.data.samples import EDIT_EXAMPLES, HOUSES, STORAGE_TANKS, EditExample
from rsgen.errors import RsgenError
from rsgen.web import jobs
from rsgen.web.jobs import MAX_IMAGES, ModelStore, WebOptions
from rsgen.web.session import SessionFiles

logger = logging.getLogger(__name__)
T = TypeVar("T")

HEAVY = "heavy"
"""The concurrency group of every heavy job (generation, super-resolution, editing)."""
MAX_FILE_SIZE = "50mb"
IMAGE_TYPES = [".png", ".jpg", ".jpeg", ".tif", ".tiff"]
SR_SAMPLES = (HOUSES, STORAGE_TANKS)
"""Shipped samples offered on the Super-resolve tab (the Edit tab offers EDIT_EXAMPLES)."""


class JobCancelled(Exception):
    """Raised inside a job at its next progress tick once its Cancel button was pressed."""


class _CancellableProgress(gr.Progress):
    """gr.Progress that raises :class:`JobCancelled` at any tick once its flag is set.

    The rsgen loops (training, sampling, tiles) tick tqdm bars, which Gradio routes to the
    request's Progress (``track_tqdm=True``); checking a flag there stops the worker thread
    itself, not only the page's wait for it.
    """

    flag: threading.Event

    def _check(self) -> None:
        if self.flag.is_set():
            raise JobCancelled

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().__call__(*args, **kwargs)

    def tqdm(self, *args: Any, **kwargs: Any) -> Any:
        self._check()
        return super().tqdm(*args, **kwargs)

    def __next__(self) -> Any:
        self._check()
        return super().__next__()

    def update(self, n: int | float = 1) -> None:
        self._check()
        super().update(n)


def cancellable(progress: gr.Progress, flag: threading.Event) -> gr.Progress:
    """Make the request's ``progress`` stop its job once ``flag`` is set; returns it."""
    progress.__class__ = _CancellableProgress
    progress.flag = flag  # type: ignore[attr-defined]
    return progress


def user_message(exc: BaseException) -> str:
    """One line for the page: an RsgenError as it reads (file names without server folders),
    anything else as its type and message."""
    if isinstance(exc, RsgenError):
        text = str(exc)
        if exc.path:
            text = text.replace(exc.path, Path(exc.path).name, 1)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


@dataclass
class WebApp:
    """The page (``blocks``), its temp folders and its models."""

    blocks: gr.Blocks
    files: SessionFiles
    store: ModelStore
    heavy_jobs: int
    max_file_size: str | int

    def launch(self, host: str = "127.0.0.1", port: int = 7860, block: bool = True) -> None:
        """Serve the page; with ``block`` until Ctrl-C (then :meth:`close`)."""
        self.blocks.queue(default_concurrency_limit=self.heavy_jobs)
        self.blocks.launch(
            server_name=host,
            server_port=port,
            max_file_size=self.max_file_size,
            show_error=True,
            ssr_mode=False,
            quiet=True,
            prevent_thread_lock=not block,
        )

    def close(self) -> None:
        """Stop the server and delete every session's files."""
        try:
            self.blocks.close()
        finally:
            self.files.close_all()


def create_app(
    t2i_model: str | None = None,
    sr_models: dict[int, str] | None = None,
    edit_train_steps: int | None = None,
    edit_train_config: str | None = None,
    edit_guide: str | None = None,
    edit_cache: str | Path | None = None,
    device: str | None = None,
    heavy_jobs: int | None = None,
    max_file_size: str | int = MAX_FILE_SIZE,
    root: str | Path | None = None,
) -> WebApp:
    """The app with these models (defaults: those of the CLI) and limits.

    ``heavy_jobs``: heavy jobs running at once (default: one per CPU core), the others queue.
    ``max_file_size``: the largest upload (``"50mb"``, or bytes). ``root``: the temp folder of
    every session (default a new ``rsgen-web-*`` one); it is also Gradio's upload cache, so
    nothing a user sends is stored elsewhere (this sets ``GRADIO_TEMP_DIR`` for the process).
    """
    options = WebOptions()
    overrides = {
        "t2i_model": t2i_model,
        "sr_models": sr_models,
        "edit_train_steps": edit_train_steps,
        "edit_train_config": edit_train_config,
        "edit_guide": edit_guide,
        "edit_cache": Path(edit_cache) if edit_cache is not None else None,
        "device": device,
    }
    for key, value in overrides.items():
        if value is not None:
            setattr(options, key, value)
    files = SessionFiles(root)
    os.environ["GRADIO_TEMP_DIR"] = str(files.root)  # read by Gradio when blocks are built and launched
    store = ModelStore(options)
    heavy = heavy_jobs or os.cpu_count() or 1
    blocks = _layout(store, files, heavy, max_file_size)
    return WebApp(blocks, files, store, heavy, max_file_size)


# ---------------------------------------------------------------------- running a request


class _Jobs:
    """Runs one tab's requests: the session's job folder, cancel flag and progress, errors."""

    def __init__(self, files: SessionFiles, store: ModelStore) -> None:
        self.files, self.store = files, store

    def run(self, request: gr.Request, tab: str, progress: gr.Progress, work: Callable[[Path], T]) -> T:
        session = request.session_hash or ""
        cancellable(progress, self.files.cancel_flag(session, tab))  # held by progress while it runs
        job = self.guard(lambda: self.files.job_folder(session, tab))
        try:
            return self.guard(lambda: work(job))
        except BaseException:
            shutil.rmtree(job, ignore_errors=True)
            raise
        finally:
            self.files.finish(session, job)

    def guard(self, work: Callable[[], T]) -> T:
        """``work()``, with any failure turned into a one-line error in the page."""
        try:
            return work()
        except JobCancelled:  # the Cancel button's own handler says so: this may never reach the page
            raise gr.Error("cancelled", visible=False, print_exception=False) from None
        except RsgenError as exc:
            raise gr.Error(user_message(exc), print_exception=False) from None
        except gr.Error:
            raise
        except Exception as exc:
            logger.exception("request failed")
            raise gr.Error(user_message(exc), print_exception=False) from None

    def upload(self, request: gr.Request, path: str | None) -> str | None:
        """Note an upload as the session's (deleted with it); returns the path."""
        if path:
            self.files.remember_upload(request.session_hash or "", path)
        return path


def _light(**options: Any) -> dict[str, Any]:
    """Event options of quick handlers: never queued behind heavy jobs."""
    return {"concurrency_limit": None, "show_progress": "minimal", **options}


def _heavy(heavy_jobs: int) -> dict[str, Any]:
    return {"concurrency_limit": heavy_jobs, "concurrency_id": HEAVY}


# ---------------------------------------------------------------------- the page


def _layout(store: ModelStore, files: SessionFiles, heavy_jobs: int, max_file_size: str | int) -> gr.Blocks:
    runner = _Jobs(files, store)
    with gr.Blocks(title="rsgen", analytics_enabled=False) as blocks:
        gr.Markdown(
            "# rsgen\nGenerate, super-resolve and edit remote-sensing images. "
            f"Uploads: PNG, JPEG or GeoTIFF up to {max_file_size}; your files are deleted when you "
            "close this page."
        )
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                _generate_tab(runner, heavy_jobs)
            with gr.Tab("Super-resolve", id="sr"):
                _sr_tab(runner, heavy_jobs)
            with gr.Tab("Edit", id="edit"):
                _edit_tab(runner, heavy_jobs)

        def end_session(request: gr.Request) -> None:
            files.close(request.session_hash or "")

        blocks.unload(end_session)
    return blocks


def _run_controls(label: str, enabled: bool = True) -> tuple[gr.Button, gr.Button]:
    with gr.Row():
        run = gr.Button(label, variant="primary", interactive=enabled)
        cancel = gr.Button("Cancel", variant="stop")
    return run, cancel


def _wire_cancel(runner: _Jobs, cancel: gr.Button, tab: str, event: Any) -> None:
    def stop(request: gr.Request) -> None:
        runner.files.cancel(request.session_hash or "", tab)
        gr.Info("cancelled")  # the job's own error races Gradio's cancel, which drops it or not

    cancel.click(stop, None, None, cancels=[event], **_light(show_progress="hidden"))


def _t2i_state(store: ModelStore) -> tuple[int | None, str | None]:
    """The model's most steps, or None and why the Generate tab cannot run."""
    try:
        return store.text_to_image_steps(), None
    except RsgenError as exc:
        return None, user_message(exc)


def _generate_tab(runner: _Jobs, heavy_jobs: int) -> None:
    max_steps, problem = _t2i_state(runner.store)
    if problem:
        gr.Markdown(
            f"**Text-to-image is not available on this server:** {problem}. Start it with "
            "`rsgen serve --t2i-model DIR` (a pipeline folder written by `TextToImage.save_pretrained`).",
            elem_id="t2i-missing",
        )
    prompt = gr.Textbox(
        label="Prompt", placeholder="many buildings and green trees around a playground", elem_id="gen-prompt"
    )
    with gr.Row():
        count = gr.Slider(1, MAX_IMAGES, value=1, step=1, label="Images")
        seed = gr.Number(value=-1, precision=0, minimum=-1, label="Seed (-1: random)")
        limit = max_steps or 100
        steps = gr.Slider(1, limit, value=min(25, limit), step=1, label="Steps")
        guidance = gr.Slider(0, 10, value=5, step=0.5, label="Guidance (1: none)")
        scales = [f"x{s}" for s in sorted(runner.store.options.sr_models) if s in (2, 4)]
        upscale = gr.Radio(["none", *scales], value="none", label="Upscale")
    run, cancel = _run_controls("Generate", enabled=problem is None)
    gallery = gr.Gallery(label="Images", columns=4, height="auto", elem_id="gen-gallery")
    download = gr.File(label="Download: images and JSON sidecar", file_count="multiple", elem_id="gen-files")
    report = gr.JSON(label="Settings", elem_id="gen-report")

    def generate(
        text: str,
        n: float,
        seed_value: float | None,
        step_count: float,
        scale: float,
        up: str,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(track_tqdm=True),
    ) -> tuple[list[str], list[str], dict[str, Any]]:
        def work(job: Path) -> jobs.GenerateOutput:
            factor = None if up == "none" else int(up[1:])
            seed_arg = None if seed_value is None else int(seed_value)
            return jobs.generate(runner.store, job, text, int(n), seed_arg, int(step_count), scale, factor)

        out = runner.run(request, "generate", progress, work)
        for note in out.warnings:
            gr.Warning(note)
        paths = [str(p) for p in out.images]
        return paths, [*paths, str(out.sidecar)], out.report

    event = run.click(
        generate,
        [prompt, count, seed, steps, guidance, upscale],
        [gallery, download, report],
        **_heavy(heavy_jobs),
    )
    _wire_cancel(runner, cancel, "generate", event)


def _upload_summary(runner: _Jobs, request: gr.Request, path: str | None) -> str:
    """A line about the uploaded image, or a page error for a non-image."""
    if not path:
        return ""
    runner.upload(request, path)
    info = runner.guard(lambda: jobs.check_image(path, runner.store.options.max_pixels))
    geo = "georeferenced" if info.georeferenced else "not georeferenced"
    return f"{Path(path).name}: {info.width}x{info.height} px, {info.count} band(s) {info.dtype}, {geo}"


def _sample_buttons(tab: str, labels: list[str] | tuple[str, ...]) -> list[gr.Button]:
    """A row of small buttons that load the package's own sample images."""
    with gr.Row(equal_height=True):
        gr.Markdown("Or try a shipped sample:")
        return [gr.Button(label, size="sm", elem_id=f"{tab}-sample-{i}") for i, label in enumerate(labels)]


def _sample_loader(runner: _Jobs, name: str) -> Callable[[gr.Request], tuple[str, str]]:
    """The handler that puts a copy of sample ``name`` in the session's folder, as an upload."""

    def load(request: gr.Request) -> tuple[str, str]:
        folder = runner.guard(lambda: runner.files.folder(request.session_hash or ""))
        path = str(runner.guard(lambda: jobs.copy_sample(name, folder)))
        return path, _upload_summary(runner, request, path)

    return load


def _sr_tab(runner: _Jobs, heavy_jobs: int) -> None:
    upload = gr.File(
        label="Image: PNG, JPEG or GeoTIFF", file_types=IMAGE_TYPES, type="filepath", elem_id="sr-upload"
    )
    summary = gr.Markdown(elem_id="sr-summary")
    samples = _sample_buttons("sr", SR_SAMPLES)
    with gr.Row():
        scales = sorted(runner.store.options.sr_models)
        scale = gr.Radio(scales, value=scales[-1], label="Scale")
        tile = gr.Dropdown(["auto", "32", "64", "128", "256"], value="auto", label="Tile (input px)")
    run, cancel = _run_controls("Super-resolve")
    slider = gr.ImageSlider(label="Before (bicubic) | after", type="filepath", elem_id="sr-slider")
    download = gr.File(label="Download (a GeoTIFF stays a georeferenced GeoTIFF)", elem_id="sr-file")
    report = gr.JSON(label="Result", elem_id="sr-report")

    def check(path: str | None, request: gr.Request) -> str:
        return _upload_summary(runner, request, path)

    upload.upload(check, [upload], [summary], **_light())
    for button, name in zip(samples, SR_SAMPLES, strict=True):
        button.click(_sample_loader(runner, name), None, [upload, summary], **_light())

    def super_resolve(
        path: str | None,
        factor: int,
        tile_text: str,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(track_tqdm=True),
    ) -> tuple[tuple[str, str], str, dict[str, Any]]:
        if not path:
            raise gr.Error("upload an image first", print_exception=False)
        runner.upload(request, path)
        tile_px = None if tile_text == "auto" else int(tile_text)
        out = runner.run(
            request,
            "sr",
            progress,
            lambda job: jobs.super_resolve(runner.store, job, path, int(factor), tile_px),
        )
        return (str(out.before), str(out.after)), str(out.output), out.report

    event = run.click(super_resolve, [upload, scale, tile], [slider, download, report], **_heavy(heavy_jobs))
    _wire_cancel(runner, cancel, "sr", event)


def _edit_tab(runner: _Jobs, heavy_jobs: int) -> None:
    gr.Markdown(
        "Upload a scene, then click two opposite corners of the region to edit on it (or type "
        "x, y, w, h in image pixels; w or h 0: the whole image). The scene's own small model "
        "trains first (minutes; kept for this session, so later edits of the same image skip it). "
        "The shipped forest sample has its model already."
    )
    upload = gr.File(
        label="Scene: PNG, JPEG or GeoTIFF", file_types=IMAGE_TYPES, type="filepath", elem_id="edit-upload"
    )
    summary = gr.Markdown(elem_id="edit-summary")
    examples = _sample_buttons("edit", [f"{e.sample}: {e.prompt}" for e in EDIT_EXAMPLES])
    corner = gr.State(None)
    with gr.Row():
        with gr.Column(scale=2):
            picture = gr.Image(
                label="ROI (click two corners)", type="filepath", interactive=False, elem_id="edit-roi-image"
            )
        with gr.Column(scale=1):
            fields = [
                gr.Number(value=0, precision=0, minimum=0, label=n, elem_id=f"edit-roi-{n}")
                for n in ("x", "y", "w", "h")
            ]
            clear = gr.Button("Whole image (no ROI)")
    prompt = gr.Textbox(label="Prompt", placeholder="the river is flooding", elem_id="edit-prompt")
    with gr.Row():
        strength = gr.Slider(0.01, 1.0, value=0.1, step=0.01, label="Strength")
        ensemble = gr.Checkbox(value=True, label="Prompt ensembling (paraphrases)")
        seed = gr.Number(value=-1, precision=0, minimum=-1, label="Seed (-1: random)")
        steps = gr.Slider(1, 30, value=8, step=1, label="Steps per scale")
    prompts = gr.Textbox(label="Prompts used", lines=5, interactive=False, elem_id="edit-prompts")
    run, cancel = _run_controls("Edit")
    slider = gr.ImageSlider(label="Before | after", type="filepath", elem_id="edit-slider")
    download = gr.File(
        label="Download: edited scene, before/after, JSON", file_count="multiple", elem_id="edit-files"
    )
    report = gr.JSON(label="Result", elem_id="edit-report")

    def show_roi(path: str | None, x: float, y: float, w: float, h: float, request: gr.Request) -> str | None:
        if not path:
            return None

        def work() -> str:
            array, _ = jobs.roi_preview(path, jobs.parse_roi(x, y, w, h), runner.store.options.preview_side)
            folder = runner.files.folder(request.session_hash or "")
            return str(jobs.save_png(array, folder / "roi_preview.png"))

        return runner.guard(work)

    def on_upload(path: str | None, request: gr.Request) -> tuple[Any, ...]:
        text = _upload_summary(runner, request, path)
        return text, show_roi(path, 0, 0, 0, 0, request), 0, 0, 0, 0, None

    upload.upload(on_upload, [upload], [summary, picture, *fields, corner], **_light())

    def on_click(path: str | None, first: Any, event: gr.SelectData) -> tuple[Any, ...]:
        if not path or event.index is None:
            return (gr.skip(),) * 5
        info = runner.guard(lambda: jobs.check_image(path))
        step = jobs.preview_step(info, runner.store.options.preview_side)
        point = (int(event.index[0]) * step, int(event.index[1]) * step)
        if first is None:
            return point, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        x, y, w, h = jobs.roi_from_corners(tuple(first), point, info.width, info.height)
        return None, x, y, w, h

    picture.select(on_click, [upload, corner], [corner, *fields], **_light()).then(
        show_roi, [upload, *fields], [picture], **_light()
    )
    for box in fields:
        box.submit(show_roi, [upload, *fields], [picture], **_light())
    clear.click(lambda: (0, 0, 0, 0, None), None, [*fields, corner], **_light()).then(
        show_roi, [upload, *fields], [picture], **_light()
    )

    def show_prompts(text: str, on: bool) -> str:
        if not (text or "").strip():
            return ""
        return "\n".join(runner.guard(lambda: jobs.edit_prompts(text, on)))

    gr.on(
        [prompt.blur, prompt.submit, ensemble.change], show_prompts, [prompt, ensemble], [prompts], **_light()
    )

    def example_loader(example: EditExample) -> Callable[..., tuple[Any, ...]]:
        load = _sample_loader(runner, example.sample)

        def use(request: gr.Request) -> tuple[Any, ...]:
            path, text = load(request)
            x, y, w, h = example.roi
            return path, text, show_roi(path, x, y, w, h, request), x, y, w, h, None, example.prompt

        return use

    for button, example in zip(examples, EDIT_EXAMPLES, strict=True):
        button.click(
            example_loader(example), None, [upload, summary, picture, *fields, corner, prompt], **_light()
        ).then(show_prompts, [prompt, ensemble], [prompts], **_light())

    def run_edit(
        path: str | None,
        text: str,
        x: float,
        y: float,
        w: float,
        h: float,
        eta: float,
        on: bool,
        seed_value: float | None,
        step_count: float,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(track_tqdm=True),
    ) -> tuple[tuple[str, str], list[str], str, dict[str, Any]]:
        if not path:
            raise gr.Error("upload a scene first", print_exception=False)
        runner.upload(request, path)
        session = request.session_hash or ""

        def work(job: Path) -> jobs.EditOutput:
            roi = jobs.parse_roi(x, y, w, h)
            cache = runner.files.folder(session) / "editor-cache"
            seed_arg = None if seed_value is None else int(seed_value)
            return jobs.edit(runner.store, job, path, text, roi, eta, on, seed_arg, int(step_count), cache)

        out = runner.run(request, "edit", progress, work)
        for note in out.warnings:
            gr.Warning(note)
        return (
            (str(out.before), str(out.after)),
            [str(p) for p in out.files],
            "\n".join(out.prompts),
            out.report,
        )

    event = run.click(
        run_edit,
        [upload, prompt, *fields, strength, ensemble, seed, steps],
        [slider, download, prompts, report],
        **_heavy(heavy_jobs),
    )
    _wire_cancel(runner, cancel, "edit", event)
