"""RS-CLIP and rs-scene: caption data, retrieval metrics, models, training, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rsgen.data.captions import (
    holdout_split,
    normalize_caption,
    read_caption_records,
    unique_captions,
    zero_shot_prompt,
)
from rsgen.errors import RsgenError
from rsgen.metrics.retrieval import recall_at_k, zero_shot_accuracy
from tests.conftest import SCENES, needs_shared, run_cli

# --- caption data -----------------------------------------------------------------------


def test_unique_captions_fold_case_and_spacing() -> None:
    assert normalize_caption("  A bridge  over water . ") == "a bridge over water"
    assert unique_captions(["A bridge .", "a bridge.", "a road"]) == ("A bridge .", "a road")


def test_zero_shot_prompt_spells_out_scene_names() -> None:
    assert zero_shot_prompt("denseresidential") == "an aerial image of a dense residential area"
    assert zero_shot_prompt("forest") == "an aerial image of a forest"


def test_read_caption_records_and_holdout(caption_folder: Path) -> None:
    train = read_caption_records(caption_folder, "train")
    assert len(train) == 12 and {r.scene for r in train} == set(SCENES)
    kept, held = holdout_split(train, 0.25, seed=0)
    assert len(held) == 3 and {r.scene for r in held} == set(SCENES)
    assert not {r.path for r in kept} & {r.path for r in held}
    assert holdout_split(train, 0.25, seed=0) == (kept, held)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "line 2: not valid JSON"),
        ('{"file": "forest_0.jpg", "captions": []}', "line 2: needs 'file'"),
        ('{"file": "missing.jpg", "captions": ["x"]}', "line 2: image 'missing.jpg' not found"),
        ('{"file": "forest_0.jpg", "captions": [" "]}', "line 2: captions must be non-empty"),
    ],
)
def test_broken_caption_lines_name_file_and_line(caption_folder: Path, line: str, problem: str) -> None:
    path = caption_folder / "captions.jsonl"
    first = path.read_text().splitlines()[0]
    path.write_text(first + "\n" + line + "\n")
    with pytest.raises(RsgenError, match=problem) as info:
        read_caption_records(caption_folder)
    assert "captions.jsonl" in str(info.value)


# --- retrieval metrics ------------------------------------------------------------------


def brute_force_recalls(sim: np.ndarray, owner: np.ndarray, k: int) -> tuple[float, float]:
    t2i = np.mean([np.argsort(-sim[j])[:k].tolist().count(owner[j]) > 0 for j in range(len(owner))])
    i2t = []
    for image in range(sim.shape[1]):
        top = np.argsort(-sim[:, image])[:k]
        i2t.append(any(owner[j] == image for j in top))
    return float(t2i), float(np.mean(i2t))


def test_recall_at_k_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    images = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(20, 8))).float(), dim=1)
    owner = torch.from_numpy(rng.integers(0, 20, size=50))
    texts = torch.nn.functional.normalize(images[owner] + 0.8 * torch.randn(50, 8), dim=1)
    scores = recall_at_k(texts, images, owner, ks=(1, 3, 5))
    sim = (texts @ images.T).numpy()
    for k in (1, 3, 5):
        t2i, i2t = brute_force_recalls(sim, owner.numpy(), k)
        assert scores[f"t2i_r{k}"] == pytest.approx(t2i)
        assert scores[f"i2t_r{k}"] == pytest.approx(i2t)


def test_perfect_and_zero_shot_metrics() -> None:
    eye = torch.eye(4)
    assert recall_at_k(eye, eye, torch.arange(4), ks=(1,)) == {"t2i_r1": 1.0, "i2t_r1": 1.0}
    assert zero_shot_accuracy(eye, eye, torch.tensor([0, 1, 2, 0])) == 0.75


# --- models -----------------------------------------------------------------------------


def tiny_rs_clip(**options):
    from rsgen.models.rs_clip import RSCLIP, RSCLIPConfig

    torch.manual_seed(0)
    config = {"embed_dim": 16, "tuned_blocks": 1, "head_hidden": 32, **options}
    return RSCLIP(RSCLIPConfig.from_dict(config))


def test_rs_clip_round_trip_and_gradients(tmp_path: Path) -> None:
    from rsgen.models.loading import load_image_text_model

    model = tiny_rs_clip(image_head="mlp").eval()
    with torch.no_grad():
        model.image_tower.tuned[0]._project_conv.weight.mul_(1.5)  # differs from ImageNet
    folder = model.save_pretrained(tmp_path / "clip")
    assert (folder / "model.safetensors").stat().st_size < 3_000_000  # trained part only
    loaded = load_image_text_model(folder)
    images = torch.rand(2, 3, 80, 96) * 2 - 1  # not 224: preprocess resizes and crops
    texts = ["a forest", "a beach seen from above"]
    with torch.no_grad():
        for a, b in (
            (model.encode_image(images), loaded.encode_image(images)),
            (model.encode_text(texts), loaded.encode_text(texts)),
        ):
            assert a.shape == (2, 16)
            assert torch.allclose(a.norm(dim=1), torch.ones(2), atol=1e-5)
            assert torch.allclose(a, b, atol=2e-3)  # fp16 storage
    pixels = images.clone().requires_grad_(True)
    (loaded.encode_image(pixels) @ loaded.encode_text(texts).T).sum().backward()
    assert torch.isfinite(pixels.grad).all() and pixels.grad.abs().sum() > 0


def test_rs_clip_rejects_foreign_weights(tmp_path: Path, tiny_model_dir: Path) -> None:
    from rsgen.models.rs_clip import RSCLIP

    with pytest.raises(RsgenError, match="not a rs_clip model"):
        RSCLIP.from_pretrained(tiny_model_dir)
    folder = tiny_rs_clip().save_pretrained(tmp_path / "clip")
    config = json.loads((folder / "config.json").read_text())
    config["model"]["embed_dim"] = 8
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(RsgenError, match="shape mismatch") as info:
        RSCLIP.from_pretrained(folder)
    assert "model.safetensors" in str(info.value)


def test_scene_classifier_round_trip(tmp_path: Path) -> None:
    from rsgen.models.scene_classifier import SceneClassifier, SceneClassifierConfig

    torch.manual_seed(0)
    model = SceneClassifier(SceneClassifierConfig(classes=["a", "b", "c"], tuned_blocks=1)).eval()
    loaded = SceneClassifier.from_pretrained(model.save_pretrained(tmp_path / "scene"))
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert model.features(images).shape == (2, 1280)
        assert torch.allclose(model(images), loaded(images), atol=2e-3)
    assert loaded.classes == ["a", "b", "c"]


# --- training and CLI -------------------------------------------------------------------


def test_train_rs_clip_resume_and_eval_cli(caption_folder: Path, tmp_path: Path) -> None:
    from rsgen.config import load_config
    from rsgen.train.loop import run_training

    overrides = [
        f"data.dir={caption_folder}",
        "data.views=2",
        "data.val_fraction=0.25",
        "model.embed_dim=16",
        "model.head_hidden=32",
        "model.tuned_blocks=1",
        "train.steps=4",
        "train.batch_size=6",
        "train.warmup_steps=1",
        "train.eval_every=2",
        "train.checkpoint_every=2",
    ]
    config = load_config("rs-clip", overrides)
    run_training(config, tmp_path / "full", progress=False)
    run_training(config, tmp_path / "half", max_steps=2, progress=False)
    run_training(config, tmp_path / "half", resume=True, progress=False)
    full = (tmp_path / "full" / "final" / "model.safetensors").read_bytes()
    assert full == (tmp_path / "half" / "final" / "model.safetensors").read_bytes()
    evals = [json.loads(line) for line in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e.get("event") == "eval"]
    assert len(evals) == 2 and 0.0 <= evals[-1]["val_zeroshot_acc"] <= 1.0

    result = run_cli(
        "eval",
        "retrieval",
        "--data",
        str(caption_folder),
        "--model",
        str(tmp_path / "full" / "best"),
        "--json",
    )
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    for key in ("t2i_r1", "t2i_r5", "t2i_r10", "i2t_r1", "i2t_r5", "i2t_r10", "zeroshot_acc"):
        assert 0.0 <= report[key] <= 1.0
    assert report["n_images"] == 3 and report["n_captions"] == 6  # duplicates folded
    assert report["model"] == "best"


def test_train_scene_classifier_and_eval_cli(caption_folder: Path, tmp_path: Path) -> None:
    from rsgen.config import load_config
    from rsgen.train.loop import run_training

    overrides = [f"data.dir={caption_folder}", "data.views=2", "train.steps=3", "train.batch_size=8"]
    run_training(
        load_config("rs-scene", [*overrides, "model.tuned_blocks=0"]), tmp_path / "s0", progress=False
    )
    run_training(load_config("rs-scene", overrides), tmp_path / "s4", progress=False)
    result = run_cli(
        "eval", "scene", "--data", str(caption_folder), "--model", str(tmp_path / "s4" / "final"), "--json"
    )
    assert result.code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["n_images"] == 3 and set(report["per_scene"]) == set(SCENES)


def test_eval_retrieval_bad_input_is_one_line(tmp_path: Path, caption_folder: Path) -> None:
    result = run_cli("eval", "retrieval", "--data", str(tmp_path), "--json")
    assert result.code == 1
    assert result.error_line() == (
        f"error: {tmp_path}: no captions.jsonl in this folder (expected the rsicd_aid150 layout)"
    )
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"\0" * 100)
    result = run_cli("eval", "retrieval", "--model", str(weights), "--data", str(caption_folder))
    assert result.code == 1 and "weights.pt" in result.error_line()


# --- the shipped models -----------------------------------------------------------------


@pytest.mark.parametrize(("name", "width"), [("rs-clip", 512), ("rs-clip-judge", 256)])
def test_shipped_image_text_models_zero_shot_on_real_images(name: str, width: int) -> None:
    """Each shipped model (the guide and the judge) separates a few clearly different RSICD
    test scenes."""
    data = needs_shared("rsicd_aid150")
    from rsgen.data.images import center_square, image_to_tensor
    from rsgen.io import read_rgb_uint8
    from rsgen.models.loading import load_image_text_model

    model = load_image_text_model(name)
    scenes = ["beach", "farmland", "forest", "airport", "storagetanks", "viaduct"]
    records = [r for r in read_caption_records(data, "test") if r.scene in scenes][::3]
    images = torch.stack([image_to_tensor(center_square(read_rgb_uint8(r.path), 224)) for r in records])
    with torch.no_grad():
        image_emb = model.encode_image(images)
        class_emb = model.encode_text([zero_shot_prompt(s) for s in scenes])
    labels = torch.tensor([scenes.index(r.scene) for r in records])
    accuracy = zero_shot_accuracy(image_emb, class_emb, labels)
    assert accuracy >= 0.7, accuracy
    assert image_emb.shape[1] == class_emb.shape[1] == width
    assert math.isclose(float(image_emb.norm(dim=1).mean()), 1.0, rel_tol=1e-4)


def test_shipped_rs_scene_classifies_real_test_images(tmp_path: Path) -> None:
    data = needs_shared("rsicd_aid150")
    from rsgen.metrics.retrieval import evaluate_scene_classifier
    from rsgen.models.scene_classifier import SceneClassifier

    classifier = SceneClassifier.from_pretrained("rs-scene")
    assert len(classifier.classes) == 30 and classifier.name == "rs-scene"
    records = read_caption_records(data, "test")[::20]
    subset = subset_caption_folder(records, tmp_path)
    result = evaluate_scene_classifier(classifier, subset, "test", progress=False)
    assert result["accuracy"] >= 0.8, result


def subset_caption_folder(records: list, folder: Path) -> Path:
    """A caption folder holding only ``records``, images linked, not copied."""
    (folder / "images").mkdir()
    lines = []
    for record in records:
        (folder / "images" / record.path.name).symlink_to(record.path)
        item = {
            "file": record.path.name,
            "scene": record.scene,
            "split": "test",
            "captions": list(record.captions),
        }
        lines.append(json.dumps(item))
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.slow
def test_shipped_rs_clip_scores_own_captions_above_shuffled() -> None:
    """CLIP score with rs-clip: real test images against their own captions vs a derangement."""
    data = needs_shared("rsicd_aid150")
    from rsgen.metrics.clipscore import clip_score
    from rsgen.models.loading import load_image_text_model

    records = read_caption_records(data, "test")[::25]
    paths = [r.path for r in records]
    own = [list(unique_captions(r.captions)) for r in records]
    shifted = own[1:] + own[:1]  # each image gets the captions of an image of another scene
    model = load_image_text_model("rs-clip")
    matched = clip_score(paths, own, model, progress=False)
    mismatched = clip_score(paths, shifted, model, progress=False)
    assert matched.label == "CLIPScore[rs-clip]" and matched.n == len(records)
    assert matched.score > mismatched.score + 10, (matched.score, mismatched.score)
