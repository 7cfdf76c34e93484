"""Single-image diffusion and text-guided editing: scheduler, pyramid, denoiser, training task,
``Editor`` and the ``rsgen edit`` / ``rsgen variations`` commands, on tiny images and models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from rsgen.data.images import image_to_tensor
from rsgen.data.pyramid import blur_errors, blurry_pyramid, build_pyramid, pyramid_shape
from rsgen.diffusion import MultiScaleScheduler, build_scheduler
from rsgen.errors import RsgenError
from rsgen.models.single_image_denoiser import SingleImageDenoiser, SingleImageDenoiserConfig
from rsgen.pipelines.editor import ClipGuidance, Editor, EditSettings, compose, editable_mask
from tests.conftest import run_cli

TINY_TRAIN = {
    "task": "single_image",
    "seed": 0,
    "model": {"name": "single_image_denoiser", "width": 8, "embedding_dim": 8},
    "scheduler": {"name": "multiscale", "num_train_timesteps": 20, "start_factor": 6.0},
    "data": {"image": None, "crop": 32},
    "train": {
        "steps": 4,
        "batch_size": 2,
        "lr": 1e-3,
        "log_every": 2,
        "eval_every": 0,
        "checkpoint_every": 0,
    },
}


def scene(size: int = 96, seed: int = 0) -> np.ndarray:
    """A smooth scene with some texture: blur errors of natural-image size."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC)).astype(np.int16)
    return np.clip(base + rng.integers(-12, 13, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_single_image.yaml"
    path.write_text(yaml.safe_dump(TINY_TRAIN))
    return path


@pytest.fixture
def editor(tmp_path: Path, tiny_config: Path) -> Editor:
    return Editor.fit(scene(), config=tiny_config, cache=tmp_path / "cache", progress=False, guide="rs-clip")


# ---------------------------------------------------------------------- pyramid and scheduler


def test_pyramid_runs_from_a_coarsest_scale_of_42_to_55_px_to_the_image():
    shape = pyramid_shape(256, 384)
    assert shape.sizes[-1] == (256, 384)
    assert 42 <= min(shape.sizes[0]) <= 55
    ratios = [b[0] / a[0] for a, b in zip(shape.sizes, shape.sizes[1:], strict=False)]
    assert all(1.25 < r < 1.6 for r in ratios)


def test_an_image_smaller_than_the_coarsest_scale_is_refused():
    with pytest.raises(RsgenError, match="needs at least 42 px"):
        pyramid_shape(30, 200)


def test_blur_errors_are_the_rmse_between_each_scale_and_its_upsampled_parent():
    image = image_to_tensor(scene(128))[None]
    pyramid = build_pyramid(image, pyramid_shape(128, 128).sizes)
    blurry = blurry_pyramid(pyramid)
    errors = blur_errors(pyramid)
    assert blurry[0] is None and len(errors) == len(pyramid) - 1
    assert errors[0] == pytest.approx(float((pyramid[1] - blurry[1]).pow(2).mean().sqrt()))
    assert all(0 < e < 0.5 for e in errors)


def make_scheduler(errors=(0.05, 0.08), **options) -> MultiScaleScheduler:
    return build_scheduler({"name": "multiscale", "blur_errors": list(errors), **options})


def test_gamma_grows_with_noise_and_reaches_one_where_sampling_of_the_scale_starts():
    scheduler = make_scheduler()
    for scale in (1, 2):
        gammas = scheduler.gammas(scale)
        assert bool((gammas[1:] >= gammas[:-1]).all())
        start = scheduler.start_timestep(scale)
        assert gammas[start] == 1 and gammas[start - 1] < 1
    assert scheduler.start_timestep(0) == 99
    # a larger blur error needs more noise to hide it: a later start
    assert scheduler.start_timestep(2) > scheduler.start_timestep(1)


def test_the_forward_mix_is_the_blurry_image_once_gamma_is_one():
    scheduler = make_scheduler()
    sharp, blurry = torch.rand(2, 3, 8, 8) * 2 - 1, torch.zeros(2, 3, 8, 8)
    start = scheduler.start_timestep(1)
    assert torch.allclose(scheduler.mix(sharp, blurry, start, 1), blurry)
    assert torch.allclose(scheduler.mix(sharp, blurry, 0, 0), sharp)


def test_predict_clean_inverts_the_forward_process_with_the_true_noise():
    scheduler = make_scheduler((0.3, 0.3))
    generator = torch.Generator().manual_seed(0)
    sharp, blurry = torch.rand(1, 3, 8, 8) * 2 - 1, torch.rand(1, 3, 8, 8) * 2 - 1
    t = 2  # gamma below gamma_max, so x_0 is recovered exactly
    assert float(scheduler.gammas(1)[t]) < scheduler.config.gamma_max
    batch = scheduler.training_batch(sharp, generator, t=t, scale=1, blurry=blurry)
    x0, eps = scheduler.predict_clean(batch.target, t, batch.x_t, 1, blurry)
    assert torch.allclose(x0, sharp, atol=1e-5) and torch.allclose(eps, batch.target, atol=1e-5)


def test_fine_scale_steps_are_deterministic_and_the_last_returns_the_clean_estimate():
    scheduler = make_scheduler()
    blurry = torch.zeros(1, 3, 8, 8)
    timesteps = scheduler.set_scale_timesteps(1, 100)
    assert timesteps[0] == scheduler.start_timestep(1) and timesteps[-1] == 0
    x = scheduler.start_sample(1, (1, 3, 8, 8), blurry, torch.Generator().manual_seed(0))
    eps = torch.randn(1, 3, 8, 8)
    a = scheduler.step(eps, timesteps[0], x, scale=1, blurry=blurry).prev_sample
    b = scheduler.step(eps, timesteps[0], x, scale=1, blurry=blurry).prev_sample
    assert torch.equal(a, b)
    last = scheduler.step(eps, 0, x, scale=1, blurry=blurry)
    assert torch.equal(last.prev_sample, last.pred_original_sample)


def test_scheduler_needs_the_blurry_image_above_scale_zero_and_valid_options():
    scheduler = make_scheduler()
    with pytest.raises(ValueError, match="needs the blurry image"):
        scheduler.mix(torch.zeros(1, 3, 4, 4), None, 0, 1)
    with pytest.raises(ValueError, match="scale must be"):
        scheduler.gammas(3)
    with pytest.raises(ValueError, match="blur_errors"):
        make_scheduler((0.1, -1.0))
    assert build_scheduler(scheduler.config.to_dict()).start_timestep(2) == scheduler.start_timestep(2)


def test_denoiser_is_fully_convolutional_and_conditioned_on_time_and_scale():
    net = SingleImageDenoiser(SingleImageDenoiserConfig(width=8, embedding_dim=8)).eval()
    x = torch.randn(2, 3, 23, 37)
    t = torch.tensor([3, 7])
    out = net(x, t, 1)
    assert out.shape == x.shape
    assert not torch.allclose(out, net(x, t, 2))
    assert not torch.allclose(out, net(x, torch.tensor([4, 7]), 1))
    # receptive field: a change at one corner does not reach the far corner
    y = x.clone()
    y[..., 0, 0] += 5
    assert torch.allclose(net(y, t, 1)[..., -1, -1], out[..., -1, -1])


# ---------------------------------------------------------------------- training and the editor


def test_fit_trains_once_and_reuses_the_cached_model(tmp_path, tiny_config):
    image = scene()
    first = Editor.fit(image, config=tiny_config, cache=tmp_path / "cache", progress=False)
    runs = list((tmp_path / "cache").iterdir())
    assert len(runs) == 1 and (runs[0] / "run" / "final" / "model_index.json").is_file()
    log = (runs[0] / "run" / "log.jsonl").read_text()
    second = Editor.fit(image, config=tiny_config, cache=tmp_path / "cache", progress=False)
    assert (runs[0] / "run" / "log.jsonl").read_text() == log  # no second training
    for a, b in zip(first.denoiser.state_dict().values(), second.denoiser.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # other settings (here: steps) are another model
    Editor.fit(image, steps=2, config=tiny_config, cache=tmp_path / "cache", progress=False)
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_a_folder_trained_on_another_image_is_refused(editor, tmp_path):
    folder = next((tmp_path / "cache").iterdir()) / "run" / "final"
    with pytest.raises(RsgenError, match="trained on another image"):
        Editor.from_pretrained(folder, image=scene(seed=1), progress=False)


def test_variations_reproduce_with_a_seed_and_take_any_size(editor):
    a, seed = editor.variations(2, seed=3, steps=4)
    b, _ = editor.variations(2, seed=3, steps=4)
    assert seed == 3 and a[0].size == (96, 96)
    assert np.array_equal(np.asarray(a[0]), np.asarray(b[0]))
    assert not np.array_equal(np.asarray(a[0]), np.asarray(a[1]))
    wide, _ = editor.variations(1, seed=0, size=(96, 160), steps=4)
    assert wide[0].size == (160, 96)


def test_roi_edit_leaves_every_pixel_beyond_the_blend_band_bit_identical(editor):
    original = editor.image
    result = editor.edit(
        "a fire in the forest", roi=(30, 30, 30, 30), seed=0, settings=EditSettings(steps=3, views=2)
    )
    edited = np.asarray(result.image)
    far = np.ones(original.shape[:2], dtype=bool)
    far[30 - 8 : 60 + 8, 30 - 8 : 60 + 8] = False
    assert np.array_equal(edited[far], original[far])
    assert result.changed[30:60, 30:60].all() and not result.changed[far].any()
    assert not np.array_equal(edited[30:60, 30:60], original[30:60, 30:60])
    assert result.prompts[0] == "a fire in the forest" and len(result.prompts) > 1


def test_edit_without_ensembling_uses_the_prompt_alone(editor):
    result = editor.edit(
        "the river is flooding", seed=0, settings=EditSettings(steps=2, views=1, ensemble=False)
    )
    assert result.prompts == ["the river is flooding"] and result.changed.all()


class MeanColourModel:
    """A stand-in image–text model: an image's embedding is its mean colour."""

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(2, 3))


@pytest.mark.parametrize("coarsest", [False, True])
def test_guidance_runs_on_its_scales_only(coarsest):
    settings = EditSettings(guide_coarsest=coarsest, views=2)
    scales = (0 if coarsest else 1, 2)
    guide = ClipGuidance(
        MeanColourModel(), torch.tensor([[1.0, 0.0, 0.0]]), settings, scales, torch.Generator()
    )
    x0 = torch.full((1, 3, 16, 16), 0.1)
    assert torch.equal(guide(x0, 3, 0), x0)  # the finest of 4 scales
    assert torch.equal(guide(x0, 0, 0), x0) != coarsest
    assert guide(x0, 1, 0)[:, 0].mean() > 0.1  # pushed toward red


def test_copy_roi_changes_only_the_target_neighbourhood(editor):
    result = editor.copy_roi((5, 5, 20, 20), (60, 60, 20, 20), seed=0, settings=EditSettings(steps=3))
    edited, original = np.asarray(result.image), editor.image
    assert np.array_equal(edited[:50, :50], original[:50, :50])
    with pytest.raises(RsgenError, match="same size"):
        editor.copy_roi((5, 5, 20, 20), (60, 60, 10, 20))


@pytest.mark.parametrize(
    ("roi", "message"),
    [
        ((10, 10, 0, 5), "is empty"),
        ((90, 10, 20, 5), "extends beyond the 96x96 image"),
        ((100, 10, 20, 5), "lies outside the 96x96 image"),
        ((1, 2, 3), "4"),
    ],
)
def test_bad_rois_are_one_line_errors(roi, message):
    with pytest.raises(RsgenError, match=message):
        editable_mask((96, 96), roi, None)


def test_masks_must_match_the_image_and_be_binary():
    with pytest.raises(RsgenError, match="mask is 10x10 px, the image 96x96"):
        editable_mask((96, 96), None, np.zeros((10, 10), np.uint8))
    with pytest.raises(RsgenError, match="binary"):
        editable_mask((4, 4), None, np.full((4, 4), 128, np.uint8))
    with pytest.raises(RsgenError, match="empty"):
        editable_mask((4, 4), None, np.zeros((4, 4), np.uint8))
    mask = np.zeros((4, 4), np.uint8)
    mask[1, 1] = 255
    assert editable_mask((4, 4), None, mask).sum() == 1


def test_compose_blends_over_at_most_the_band():
    original = np.zeros((40, 40, 3), np.uint8)
    edited = np.full((40, 40, 3), 200, np.uint8)
    editable = np.zeros((40, 40), bool)
    editable[15:25, 15:25] = True
    out, changed = compose(original, edited, editable, band=4)
    assert (out[15:25, 15:25] == 200).all()
    assert 0 < out[15, 12, 0] < 200  # inside the band: a blend
    assert not changed[15, 10] and (out[15, 10] == 0).all()


# ---------------------------------------------------------------------- the commands


def write_png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def test_edit_command_writes_the_image_a_before_after_and_a_sidecar(tmp_path, tiny_config):
    source = write_png(tmp_path / "scene.png", scene())
    out = tmp_path / "out" / "edited.png"
    result = run_cli(
        "edit",
        source,
        "a fire in the forest",
        "-o",
        out,
        "--roi",
        "30,30,30,30",
        "--seed",
        "1",
        "--steps",
        "3",
        "--train-config",
        tiny_config,
        "--json",
        "-q",
        env={"RSGEN_CACHE": str(tmp_path / "cache")},
    ).ok()
    report = result.json()
    assert report["seed"] == 1 and report["prompts"][0] == "a fire in the forest"
    assert set(report["scores"]["rs-clip"]) == {"before", "after", "gain"}
    assert out.is_file() and (tmp_path / "out" / "edited_before_after.png").is_file()
    assert json.loads(out.with_suffix(".json").read_text())["files"][0] == str(out)
    edited, original = np.asarray(Image.open(out)), scene()
    assert np.array_equal(edited[:20], original[:20])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["", "--roi", "1,1,5,5"], "PROMPT is empty"),
        (["fire", "--roi", "90,90,20,20"], "extends beyond the 96x96 image"),
        (["fire", "--roi", "100,10,20,20"], "lies outside the 96x96 image"),
        (["fire", "--roi", "1,1,a,5"], "x,y,w,h in whole pixels"),
        (["--copy-from", "0,0,10,10", "--copy-to", "50,50,20,10"], "same size"),
        (["--copy-from", "0,0,10,10"], "go together"),
        (["fire", "--strength", "3"], "strength must be in"),
    ],
)
def test_edit_command_refuses_bad_input_in_one_line(tmp_path, tiny_config, args, message):
    source = write_png(tmp_path / "scene.png", scene())
    out = tmp_path / "edited.png"
    result = run_cli(
        "edit",
        source,
        *args,
        "-o",
        out,
        "--steps",
        "2",
        "--train-config",
        tiny_config,
        "-q",
        env={"RSGEN_CACHE": str(tmp_path / "cache")},
    )
    assert result.code != 0 and message in result.error_line()
    assert not out.exists()


def test_edit_command_refuses_a_mask_of_another_size_and_a_huge_scene_without_roi(tmp_path, tiny_config):
    source = write_png(tmp_path / "scene.png", scene())
    mask = write_png(tmp_path / "mask.png", np.zeros((10, 10, 3), np.uint8))
    result = run_cli("edit", source, "fire", "--mask", mask, "-o", tmp_path / "e.png")
    assert result.code == 1 and "mask is 10x10 px" in result.error_line()
    big = write_png(tmp_path / "big.png", np.zeros((100, 900, 3), np.uint8))
    result = run_cli("edit", big, "fire", "-o", tmp_path / "e.png")
    assert result.code == 1 and "--roi or --mask" in result.error_line()
    small = write_png(tmp_path / "small.png", np.zeros((30, 30, 3), np.uint8))
    result = run_cli(
        "edit",
        small,
        "fire",
        "-o",
        tmp_path / "e.png",
        "--train-config",
        tiny_config,
        env={"RSGEN_CACHE": str(tmp_path / "cache")},
    )
    assert result.code == 1 and "needs at least" in result.error_line()
    assert not (tmp_path / "e.png").exists()


def test_unreachable_paraphrase_endpoint_warns_and_falls_back(tmp_path, tiny_config):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = write_png(tmp_path / "scene.png", scene())
    result = run_cli(
        "edit",
        source,
        "the house is damaged",
        "-o",
        tmp_path / "e.png",
        "--roi",
        "10,10,30,30",
        "--paraphrase-endpoint",
        f"http://127.0.0.1:{port}/v1",
        "--steps",
        "2",
        "--train-config",
        tiny_config,
        "--json",
        "-q",
        env={"RSGEN_CACHE": str(tmp_path / "cache")},
    ).ok()
    assert "warning: paraphrase endpoint" in result.stderr and "offline" in result.stderr
    assert len(result.json()["prompts"]) > 1


def test_variations_command_writes_seeded_images(tmp_path, tiny_config):
    source = write_png(tmp_path / "scene.png", scene())
    report = (
        run_cli(
            "variations",
            source,
            "-o",
            tmp_path / "vars",
            "-n",
            "2",
            "--seed",
            "5",
            "--size",
            "128x96",
            "--steps",
            "3",
            "--train-config",
            tiny_config,
            "--json",
            "-q",
            env={"RSGEN_CACHE": str(tmp_path / "cache")},
        )
        .ok()
        .json()
    )
    assert report["seed"] == 5 and report["size"] == [128, 96] and len(report["files"]) == 2
    assert Image.open(report["files"][0]).size == (128, 96)


def test_a_large_geotiff_is_edited_in_a_window_and_keeps_georeferencing_and_other_bands(
    tmp_path, tiny_config
):
    import rasterio

    from tests.test_io_windows import uint16_scene

    source, data = uint16_scene(tmp_path, width=300, height=200)
    out = tmp_path / "edited.tif"
    report = (
        run_cli(
            "edit",
            source,
            "the house is damaged",
            "-o",
            out,
            "--roi",
            "120,60,40,40",
            "--window",
            "128",
            "--steps",
            "2",
            "--no-ensemble",
            "--train-config",
            tiny_config,
            "--json",
            "-q",
            env={"RSGEN_CACHE": str(tmp_path / "cache")},
        )
        .ok()
        .json()
    )
    x, y, w, h = report["window"]
    assert w <= 128 and h <= 128 and x <= 120 and y <= 60
    with rasterio.open(source) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs and dst.transform == src.transform and dst.nodata == src.nodata
        assert dst.count == 4 and dst.dtypes == src.dtypes
        edited = dst.read()
    far = np.ones((200, 300), bool)
    far[60 - 8 : 100 + 8, 120 - 8 : 160 + 8] = False
    assert np.array_equal(edited[:, far], data[:, far])
    assert np.array_equal(edited[3], data[3])  # the NIR band is never edited
    assert not np.array_equal(edited[:3, 60:100, 120:160], data[:3, 60:100, 120:160])


def test_eval_edit_reports_guide_and_judge_scores_and_the_outside_pixels(tmp_path, tiny_config):
    write_png(tmp_path / "a.png", scene(seed=0))
    write_png(tmp_path / "b.png", scene(160, seed=1))
    cases = tmp_path / "cases.jsonl"
    cases.write_text(
        '{"image": "a.png", "prompt": "a fire in the forest", "roi": [20, 20, 40, 40]}\n'
        '{"image": "b.png", "prompt": "the river is flooding", "roi": [40, 40, 60, 60]}\n'
    )
    report = (
        run_cli(
            "eval",
            "edit",
            cases,
            "-o",
            tmp_path / "out",
            "--max-side",
            "96",
            "--steps",
            "2",
            "--train-config",
            tiny_config,
            "--guide",
            "rs-clip-judge",
            "--json",
            "-q",
            env={"RSGEN_CACHE": str(tmp_path / "cache")},
        )
        .ok()
        .json()
    )
    first, second = report["results"]
    assert report["settings"]["guide"] == "rs-clip-judge"
    assert set(first["scores"]) == {"rs-clip-judge", "rs-clip"}  # guide, rs-clip, judge: once each
    assert first["size"] == [96, 96] and second["size"] == [96, 96]
    assert second["roi"] == [24, 24, 36, 36]  # shrunk with its image
    assert set(first["scores"]["rs-clip"]) == {"before", "after", "gain"}
    assert set(first["scores"]["rs-clip-judge"]) == {"before", "after", "gain"}
    assert 0 < first["ssim_outside"] <= 1 and report["summary"]["cases"] == 2
    assert (tmp_path / "out" / "contact_sheet.png").is_file() and (
        tmp_path / "out" / "a_before_after.png"
    ).is_file()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "x"}', "not a case"),
        ('{"image": "nope.png", "prompt": "x"}', "image not found"),
        ('{"image": "a.png", "prompt": "x", "roi": [1, 2]}', "roi needs 4 numbers"),
    ],
)
def test_eval_edit_refuses_a_bad_case_file(tmp_path, line, message):
    write_png(tmp_path / "a.png", scene())
    cases = tmp_path / "cases.jsonl"
    cases.write_text(line + "\n")
    result = run_cli("eval", "edit", cases, "-o", tmp_path / "out")
    assert result.code == 1 and message in result.error_line() and "line 1" in result.error_line()
