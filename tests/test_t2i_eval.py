"""``rsgen eval t2i`` and :mod:`rsgen.pipelines.t2i_eval` on a tiny random TextToImage (16 px) and
a tiny synthetic caption dataset; the shipped scoring networks (rs-scene, efficientnet-lite0,
rs-clip) are loaded once per module."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rsgen.data.captions import CaptionRecord, read_caption_records
from rsgen.errors import RsgenError
from rsgen.metrics.feature_sets import FeatureSet
from rsgen.pipelines import t2i_eval
from rsgen.pipelines.t2i_eval import (
    ModelSpec,
    Scorers,
    T2IEvalSettings,
    build_reference,
    evaluate_model,
    evaluate_text_to_image,
    model_specs,
    nearest,
    parse_seeds,
    select_cases,
)
from tests.conftest import run_cli, textured_image
from tests.test_text_to_image import SIZE, tiny_pipeline

TINTS = {"forest": (20, 120, 30), "beach": (230, 210, 150), "river": (40, 80, 200)}
TRAIN, TEST = 6, 2  # per scene; the 0.1 hold-out keeps 1 of the 6 train images per scene


@pytest.fixture(scope="module")
def t2i_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_pipeline().save_pretrained(tmp_path_factory.mktemp("t2i") / "tiny-t2i")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An rsicd_aid150-style folder: 3 tinted scenes x (6 train + 2 test) images of 32 px."""
    folder = tmp_path_factory.mktemp("t2i-data")
    (folder / "images").mkdir()
    lines = []
    for s, (scene, tint) in enumerate(TINTS.items()):
        for i in range(TRAIN + TEST):
            texture = textured_image((32, 32), seed=10 * s + i).astype(np.float32)
            image = (0.4 * texture + 0.6 * np.array(tint, np.float32)).astype(np.uint8)
            Image.fromarray(image).save(folder / "images" / f"{scene}_{i}.png")
            captions = [f"A {scene} seen from above .", f"a {scene} seen from above", f"many {scene} pixels"]
            split = "test" if i >= TRAIN else "train"
            lines.append(
                json.dumps({"file": f"{scene}_{i}.png", "scene": scene, "split": split, "captions": captions})
            )
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def scorers() -> Scorers:
    return Scorers.load("cpu")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RSGEN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# --------------------------------------------------------------------------- pieces


def records(count: int) -> list[CaptionRecord]:
    return [
        CaptionRecord(Path(f"img{i}.jpg"), "forest", "test", ("A b .", "a b", f"c {i}")) for i in range(count)
    ]


def test_cases_are_a_seeded_subset_in_file_order_with_the_first_distinct_caption():
    every = select_cases(records(20), None)
    assert [c.file.name for c in every] == [f"img{i}.jpg" for i in range(20)]
    assert {c.caption for c in every} == {"A b ."}
    subset = select_cases(records(20), 5, seed=0)
    names = [c.file.name for c in subset]
    assert len(names) == 5 and names == sorted(names, key=lambda n: int(n[3:-4]))
    assert names == [c.file.name for c in select_cases(records(20), 5, seed=0)]
    assert names != [c.file.name for c in select_cases(records(20), 5, seed=1)]
    assert len(select_cases(records(20), 50)) == 20


def test_model_specs_seeds_and_settings(tmp_path):
    (tmp_path / "a" / "best").mkdir(parents=True)
    (tmp_path / "b" / "best").mkdir(parents=True)
    specs = model_specs(["sp=runs/sp/best", str(tmp_path / "a" / "best"), str(tmp_path / "b" / "best")])
    assert [s.name for s in specs] == ["sp", "a/best", "b/best"] and specs[0].path == "runs/sp/best"
    with pytest.raises(RsgenError, match="same name"):
        model_specs(["x=one", "x=two"])
    assert parse_seeds("0,1") == (0, 1)
    with pytest.raises(RsgenError, match="comma-separated integers"):
        parse_seeds("0,a")
    for settings, message in [
        (T2IEvalSettings(images=0), "--images must be a positive"),
        (T2IEvalSettings(batch=0), "--batch must be a positive"),
        (T2IEvalSettings(seeds=(1, 1)), "distinct"),
        (T2IEvalSettings(seeds=(-1,)), r"seeds must be in \[0"),
    ]:
        with pytest.raises(RsgenError, match=message):
            settings.check()


def test_generate_batch_is_seeded_and_one_image_per_prompt():
    pipe = tiny_pipeline()
    prompts = ["a river", "a dense forest", "a beach"]
    a = pipe.generate_batch(prompts, seed=2, steps=3, guidance=3.0)
    b = pipe.generate_batch(prompts, seed=2, steps=3, guidance=3.0)
    assert len(a.images) == 3 and a.images[0].size == (SIZE, SIZE) and a.prompts == prompts
    assert all((np.asarray(x) == np.asarray(y)).all() for x, y in zip(a.images, b.images, strict=True))
    assert a.settings == {"num_images": 1, "steps": 3, "guidance": 3.0, "truncation": 1.0}
    with pytest.raises(RsgenError, match="steps must be in"):
        pipe.generate_batch(prompts, steps=0)


def test_nearest_is_the_cosine_distance_to_the_closest_training_feature():
    train = FeatureSet(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), None, "rs-scene")
    query = FeatureSet(torch.tensor([[0.0, 5.0], [1.0, 1.0]]), None, "rs-scene")
    distance, index = nearest(query, train)
    assert index.tolist() == [1, 0]
    assert distance.tolist() == pytest.approx([0.0, 1 - 2**-0.5])


# --------------------------------------------------------------------------- whole evaluations


def test_evaluation_writes_images_and_report_and_caches_the_training_features(
    t2i_dir, data_dir, scorers, tmp_path, cache
):
    out = tmp_path / "out"
    settings = T2IEvalSettings(images=4, seeds=(0, 1), steps=2, batch=3)
    report = evaluate_text_to_image(
        [ModelSpec("tiny", str(t2i_dir))], data_dir, settings, out, scorers=scorers, progress=False
    )
    assert json.loads((out / "eval.json").read_text()) == report
    assert report["images"] == 4 and report["image_size"] == SIZE and report["n_train"] == 3 * (TRAIN - 1)
    real, (row,) = report["real"], report["models"]
    assert real["n"] == 4 and real["n_holdout"] == 3
    for key in t2i_eval.METRIC_KEYS:
        assert isinstance(real[key], float) and isinstance(row[key], float), key
        assert isinstance(row[f"{key}_std"], float), key
    assert 0 <= real["scene_accuracy"] <= 1 and real["FD[rs-scene]"] > 0
    assert [run["seed"] for run in row["runs"]] == [0, 1] and row["steps"] == 2
    assert all(isinstance(row["round_trip"][key], float) for key in t2i_eval.METRIC_KEYS)
    for run in row["runs"]:
        folder = Path(run["images_dir"])
        assert folder == out / "images" / f"tiny-seed{run['seed']}"
        names = sorted(p.name for p in folder.glob("*.png"))
        assert names == [image["file"] for image in run["images"]] and len(names) == 4
        assert run["seconds"] > 0 and run["images"][0]["nearest_train"].endswith(".png")
        captions = [json.loads(line) for line in (folder / "captions.jsonl").read_text().splitlines()]
        assert [c["file"] for c in captions] == names
    assert len(list((cache / "t2i_eval").glob("*.npz"))) == 1
    one_seed = T2IEvalSettings(images=4, seeds=(0,), steps=2, batch=3)
    again = evaluate_text_to_image(
        [ModelSpec("tiny", str(t2i_dir))], data_dir, one_seed, None, scorers=scorers, progress=False
    )
    assert again["real"] == real and again["models"][0]["runs"][0]["images"] == row["runs"][0]["images"]


class CopyingModel:
    """A 'model' that returns the training images themselves: the memorisation check must see it."""

    max_steps = 10

    def __init__(self, images: list[Image.Image]) -> None:
        self.images = images

    def generate_batch(self, prompts, seed, steps, guidance, truncation):
        from rsgen.pipelines.text_to_image import GenerationResult

        return GenerationResult([self.images.pop(0) for _ in prompts], seed, list(prompts))

    @staticmethod
    def round_trip(images):
        """A lossless 'tokenizer'."""
        return images


def test_a_model_that_copies_its_training_set_is_flagged(data_dir, scorers):
    settings = T2IEvalSettings(images=4, steps=2)
    cases = select_cases(read_caption_records(data_dir, "test"), 4)
    ref = build_reference(data_dir, cases, SIZE, settings, scorers, progress=False)
    copies = [
        Image.open(path).convert("RGB").resize((SIZE, SIZE), Image.BICUBIC) for path in ref.train_files[:4]
    ]
    row = evaluate_model(
        CopyingModel(copies), ModelSpec("copy", "-"), ref, settings, scorers, None, True, False
    )
    assert row["closer_than_real_p5"] == 1.0 and row["nn_distance_median"] < ref.real_p5
    assert row["runs"][0]["images"][0]["nearest_train"] == ref.train_files[0].name
    real = t2i_eval.real_row(ref, scorers, settings.is_splits)
    for key in ("scene_accuracy", "CLIPScore[rs-clip]", "nn_distance_median"):
        assert row["round_trip"][key] == real[key], key  # a lossless round trip scores as the real images


# --------------------------------------------------------------------------- the command line


@pytest.fixture
def shared_scorers(scorers, monkeypatch):
    """The CLI reuses the module's scoring networks (loading them is most of a tiny run)."""
    monkeypatch.setattr(Scorers, "load", classmethod(lambda cls, device="cpu": scorers))


def test_cli_json_and_table(t2i_dir, data_dir, tmp_path, shared_scorers):
    out = tmp_path / "out"
    args = ["eval", "t2i", f"tiny={t2i_dir}", "--data", data_dir, "--images", "3", "--steps", "2"]
    report = run_cli(*args, "--batch", "2", "-o", out, "--json", "-q").ok().json()
    assert report == json.loads((out / "eval.json").read_text())
    assert report["models"][0]["name"] == "tiny" and report["seeds"] == [0] and report["batch"] == 2
    assert sorted(p.name for p in (out / "images").glob("*.png")) == [
        i["file"] for i in report["models"][0]["runs"][0]["images"]
    ]
    table = run_cli(*args, "--model", f"again={t2i_dir}", "--seed", "3", "-q").ok().stdout
    assert "real (test)" in table and "tiny" in table and "again" in table and "FD[rs-scene]" in table
    assert "round trip (tiny)" in table and "round trip (again)" not in table  # one tokenizer, one column


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--images", "0"], "--images must be a positive integer"),
        (["--steps", "11"], "steps must be in 1..10"),
        (["--guidance", "-1"], "guidance must be >= 0"),
        (["--truncation", "0"], "truncation must be in"),
        (["--batch", "0"], "--batch must be a positive integer"),
        (["--seeds", "0,x"], "--seeds must be comma-separated integers"),
        (["--seeds", "0,0"], "distinct"),
        (["--seed", "1", "--seeds", "0,1"], "not both"),
        (["--model", "MISSING"], "no such model folder"),
        (["--data", "EMPTY"], "no captions.jsonl"),
        (["-o", "FILE"], "output must be a folder"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(t2i_dir, data_dir, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    files = {"MISSING": tmp_path / "missing", "EMPTY": tmp_path / "empty", "FILE": tmp_path / "file"}
    args = [str(files.get(arg, arg)) for arg in args]
    base = ["--data", str(data_dir)] if "--data" not in args else []
    out = [] if "-o" in args else ["-o", str(tmp_path / "out")]
    result = run_cli("eval", "t2i", str(t2i_dir), *base, *args, *out)
    assert result.code != 0
    assert message in result.error_line()
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- the real test split


def test_real_test_split_cases(tmp_path):
    from tests.conftest import needs_shared

    folder = needs_shared("rsicd_aid150")
    test = t2i_eval.load_test_records(folder)
    cases = select_cases(test, None)
    assert len(cases) == 463 and cases[0].caption == test[0].captions[0].strip()
    assert [c.file for c in select_cases(test, 50)] == [c.file for c in select_cases(test, 50)]
