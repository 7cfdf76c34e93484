"""rs-clip-judge: the image–text model that scores edits, independent of the guiding rs-clip.

Its config differs from rs-clip's in seed, tuned blocks, image head, embedding width and
augmentation; the augmentation switches (``data.crop_scale``, ``data.jitter``) leave rs-clip's
views and cache files exactly as they were.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rsgen.config import load_config
from rsgen.errors import RsgenError
from rsgen.train.feature_cache import DEFAULT_AUGMENTATION, Augmentation, _cache_file, augmented_view
from tests.conftest import needs_shared

# --- the config ---------------------------------------------------------------------------


def test_judge_config_differs_from_rs_clip_in_every_independence_switch() -> None:
    clip, judge = load_config("rs-clip"), load_config("rs-clip-judge")
    assert judge["task"] == clip["task"] == "rs_clip"
    assert (clip["seed"], judge["seed"]) == (0, 1)
    for key, (ours, theirs) in {
        "tuned_blocks": (3, 2),
        "image_head": ("linear", "mlp"),
        "embed_dim": (512, 256),
    }.items():
        assert (clip["model"][key], judge["model"][key]) == (ours, theirs), key
    assert Augmentation.from_config(clip["data"]) == DEFAULT_AUGMENTATION
    assert Augmentation.from_config(judge["data"]) == Augmentation(crop_scale=(0.35, 1.0), jitter=0.15)
    # Same towers, data and budget: it trains in about the same CPU time.
    assert judge["model"]["name"] == clip["model"]["name"]
    for section, key in [("data", "dir"), ("data", "split"), ("data", "views"), ("train", "steps")]:
        assert judge[section][key] == clip[section][key], key
    assert judge["train"]["batch_size"] == clip["train"]["batch_size"]


def test_judge_model_trains_other_parameters_than_rs_clip() -> None:
    from rsgen.models.rs_clip import RSCLIP

    clip = RSCLIP.from_config(load_config("rs-clip")["model"])
    judge = RSCLIP.from_config(load_config("rs-clip-judge")["model"])
    assert (clip.image_tower.split, judge.image_tower.split) == (13, 14)

    def trainable(model: RSCLIP) -> dict[str, tuple[int, ...]]:
        return {k: tuple(p.shape) for k, p in model.named_parameters() if p.requires_grad}

    ours, theirs = trainable(clip), trainable(judge)
    assert ours["image_head.weight"] == (512, 1280) and "image_head.weight" not in theirs
    assert theirs["image_head.0.weight"] == (1024, 1280) and theirs["image_head.3.weight"] == (256, 1024)
    assert ours["text_head.3.weight"] == (512, 1024) and theirs["text_head.3.weight"] == (256, 1024)
    # rs-clip tunes blocks 13-15 + head conv, the judge 14-15 + head conv: block 13 stays ImageNet.
    clip_blocks = [n for n in ours if n.startswith("image_tower.tuned.")]
    judge_blocks = [n for n in theirs if n.startswith("image_tower.tuned.")]
    assert len(judge_blocks) < len(clip_blocks)
    assert not any(p.requires_grad for p in judge.image_tower.frozen[-1].parameters())
    for a, b in zip(clip.image_tower.tuned[1:], judge.image_tower.tuned, strict=True):
        assert type(a) is type(b)  # the judge's tuned part is rs-clip's without its first block
    assert set(theirs) <= set(judge.saved_state_dict())  # what it trains is what it ships


# --- the augmentation switches ------------------------------------------------------------


def tiny_image() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (40, 52, 3), dtype=np.uint8)


def views(augment: Augmentation = DEFAULT_AUGMENTATION, seed: int = 0) -> torch.Tensor:
    image = tiny_image()
    return torch.stack(
        [augmented_view(image, 32, np.random.default_rng([seed, v, 7]), augment) for v in (1, 2, 3)]
    )


def correlations(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Pearson correlation of the pixels of each pair of views."""
    pairs = zip(a.flatten(1), b.flatten(1), strict=True)
    return [float(torch.corrcoef(torch.stack(pair))[0, 1]) for pair in pairs]


def test_default_augmentation_draws_the_views_it_drew_before_the_switches() -> None:
    out = views()
    # Recorded with the code before crop_scale / jitter became switches.
    assert [float(v.sum()) for v in out] == pytest.approx([212.7226, -224.7327, -323.1452], abs=2e-3)
    assert [float(v.abs().sum()) for v in out] == pytest.approx([934.2267, 921.3351, 926.0488], abs=2e-3)
    assert out[0, :, 0, 0].tolist() == pytest.approx([0.60360, -0.26051, 0.97393], abs=1e-4)
    assert torch.equal(views(Augmentation.from_config({"crop_scale": [0.5, 1], "jitter": 0.1})), out)


def test_augmentation_switches_change_the_views() -> None:
    base = views()
    cropped = views(Augmentation(crop_scale=(0.2, 0.3)))
    jittered = views(Augmentation(jitter=0.3))
    plain_colours = views(Augmentation(jitter=0.0))
    for other in (cropped, jittered, plain_colours):
        assert other.shape == base.shape and not torch.allclose(other, base, atol=1e-3)
    # Jitter alone keeps each view's crop (the same pixels up to brightness/contrast); the crop
    # scale moves it.
    assert min(correlations(jittered, plain_colours)) > 0.99
    assert max(correlations(cropped, plain_colours)) < 0.5
    assert not torch.allclose(views(seed=1), base, atol=1e-3)


def test_cache_files_keep_rs_clip_names_and_separate_the_judge() -> None:
    paths = [Path("a.jpg"), Path("b.jpg")]
    # Names of rs-clip's files before the switches existed: its cached features stay valid.
    assert _cache_file(paths, 0, 0).name == "effnet-lite0-b12-0260c84788ca0cfc-view0.safetensors"
    assert _cache_file(paths, 1, 0).name == "effnet-lite0-b12-27ee426743674511-view1.safetensors"
    assert _cache_file(paths, 1, 0, Augmentation((0.5, 1.0), 0.1)) == _cache_file(paths, 1, 0)
    judge = Augmentation.from_config(load_config("rs-clip-judge")["data"])
    assert _cache_file(paths, 0, 1, judge) == _cache_file(paths, 0, 0)  # the plain image is shared
    names = {_cache_file(paths, 1, s, a) for s in (0, 1) for a in (DEFAULT_AUGMENTATION, judge)}
    assert len(names) == 4


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"crop_scale": [0.0, 1.0]}, "data.crop_scale must be"),
        ({"crop_scale": [0.9, 0.5]}, "data.crop_scale must be"),
        ({"crop_scale": 0.5}, "data.crop_scale must be"),
        ({"crop_scale": [0.2, 0.5, 1.0]}, "data.crop_scale must be"),
        ({"jitter": 1.5}, "data.jitter must be"),
        ({"jitter": "strong"}, "data.jitter must be"),
    ],
)
def test_bad_augmentation_is_a_one_line_error(data: dict, problem: str) -> None:
    with pytest.raises(RsgenError, match=problem) as info:
        Augmentation.from_config(data)
    assert "\n" not in str(info.value)


def test_judge_views_of_a_real_image_differ_from_rs_clip_views() -> None:
    data = needs_shared("rsicd_aid150")
    from rsgen.data.captions import read_caption_records
    from rsgen.train.feature_cache import view_batch

    path = read_caption_records(data, "test")[0].path
    judge = load_config("rs-clip-judge")
    augment = Augmentation.from_config(judge["data"])
    for view in (0, 1):
        clip_view = view_batch([path], view, 0, 224)
        judge_view = view_batch([path], view, judge["seed"], 224, augment)
        assert torch.equal(clip_view, judge_view) == (view == 0)


# --- training -----------------------------------------------------------------------------


def test_train_judge_two_steps_on_tiny_data(caption_folder: Path, tmp_path: Path) -> None:
    """The judge config trains through the rs_clip task with its own views (tiny widths)."""
    from rsgen.data.captions import read_caption_records
    from rsgen.train.loop import run_training

    overrides = [
        f"data.dir={caption_folder}",
        "data.views=2",
        "data.val_fraction=0.25",
        "model.embed_dim=16",
        "model.head_hidden=32",
        "train.steps=2",
        "train.batch_size=6",
        "train.warmup_steps=1",
        "train.eval_every=2",
        "train.checkpoint_every=2",
    ]
    run_training(load_config("rs-clip-judge", overrides), tmp_path / "judge", progress=False)
    saved = json.loads((tmp_path / "judge" / "final" / "config.json").read_text())["model"]
    assert (saved["tuned_blocks"], saved["image_head"], saved["embed_dim"]) == (2, "mlp", 16)
    features = caption_folder.parent / "cache" / "features"
    judge_views = {p.name for p in features.glob("effnet-lite0-b12-*-view1.safetensors")}
    paths = [r.path for r in read_caption_records(caption_folder, "train")]  # the task's order
    assert _cache_file(paths, 1, 0).name not in judge_views  # not rs-clip's view 1
    assert _cache_file(paths, 1, 1, Augmentation((0.35, 1.0), 0.15)).name in judge_views
    with pytest.raises(RsgenError, match="data.jitter"):
        run_training(load_config("rs-clip-judge", [*overrides, "data.jitter=2"]), tmp_path / "bad")
