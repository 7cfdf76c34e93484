"""Generative metrics: FD/KID/IS on torchmetrics, CLIP score, streaming, honest labels, the
``rsgen eval fid`` / ``rsgen eval clip`` commands, their bad-input errors, and a smoke test of
``benchmarks/bench_embed.py``.

Tiny stand-ins keep it fast: :class:`TinyExtractor` (a random projection of 4x4 colour means)
and :class:`TinyCLIP` (mean colour vs colour words). The real EfficientNet-Lite0 runs once, on
a handful of 32 px images, through the command line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from rsgen.errors import RsgenError
from rsgen.metrics import (
    FDResult,
    FeatureSet,
    MetricExtractor,
    build_metric_extractor,
    clip_score,
    evaluate_generative,
    extract_features,
    fd_from_features,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    metric_label,
    read_captions,
)
from rsgen.models.image_text import ImageTextModel, resize_center_crop
from tests.conftest import REPO, needs_shared, run_cli, textured_image

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

# --------------------------------------------------------------------------- stand-ins


class TinyExtractor(MetricExtractor):
    """8-d features (a fixed random projection of 4x4 average-pooled pixels), 5 logits."""

    name = "tiny"
    num_features = 8
    num_classes = 5
    input_size = 16

    def __init__(self, name: str = "tiny") -> None:
        super().__init__()
        self.name = name
        generator = torch.Generator().manual_seed(0)
        self.proj = nn.Linear(48, 8)
        self.head = nn.Linear(8, 5)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator))
        self.freeze()

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.adaptive_avg_pool2d(self.resize(images), 4).flatten(1)
        features = self.proj(x)
        return features, self.head(features)


COLOURS = {"red": (1.0, -1.0, -1.0), "green": (-1.0, 1.0, -1.0), "blue": (-1.0, -1.0, 1.0)}


class TinyCLIP(ImageTextModel):
    """Image embedding = mean colour in [-1, 1]; text embedding = sum of its colour words."""

    name = "tiny-clip"
    image_size = 8
    embed_dim = 3

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return resize_center_crop(images, self.image_size)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.mean(dim=(-2, -1)) * self.scale

    def text_features(self, texts: list[str]) -> torch.Tensor:
        vectors = [[sum(COLOURS.get(w, (0.0,) * 3)[i] for w in t.split()) for i in range(3)] for t in texts]
        return torch.tensor(vectors) * self.scale


def solid(path: Path, rgb: tuple[int, int, int], size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), rgb, dtype=np.uint8)).save(path)
    return path


def make_folder(folder: Path, count: int, seed: int = 0, size: tuple[int, int] = (32, 32)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(textured_image(size, seed=seed + i)).save(folder / f"img{i:02d}.png")
    return folder


def scipy_fd(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy's matrix square root."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def feature_set(array: np.ndarray, name: str = "tiny", logits: np.ndarray | None = None) -> FeatureSet:
    as_tensor = None if logits is None else torch.tensor(logits, dtype=torch.float32)
    return FeatureSet(torch.tensor(array, dtype=torch.float32), as_tensor, name)


@pytest.fixture
def features() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 16))
    b = rng.normal(0.5, 1.5, size=(150, 16)) @ rng.normal(size=(16, 16)) * 0.5
    return a, b


# --------------------------------------------------------------------------- FD, KID, IS


def test_fd_matches_scipy(features: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = features
    expected = scipy_fd(a, b)
    assert expected > 1
    assert fd_from_features(a, b) == pytest.approx(expected, rel=1e-6)
    assert fd_from_features(torch.tensor(a), torch.tensor(b)) == pytest.approx(expected, rel=1e-6)
    # the torchmetrics FrechetInceptionDistance path, on float32-stored features
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    result = frechet_distance(feature_set(a32), feature_set(b32))
    assert result.value == pytest.approx(scipy_fd(a32.astype(np.float64), b32.astype(np.float64)), rel=1e-6)
    assert (result.n_real, result.n_fake, result.extractor) == (200, 150, "tiny")


def test_fd_of_a_set_with_itself_is_zero(features: tuple[np.ndarray, np.ndarray]) -> None:
    a, _ = features
    assert abs(fd_from_features(a, a)) < 1e-6
    assert abs(frechet_distance(feature_set(a), feature_set(a)).value) < 1e-6


def test_kid_same_distribution_near_zero_different_positive() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    z = rng.normal(1.0, 1.0, size=(250, 16))
    same = kernel_inception_distance(feature_set(x), feature_set(y), subset_size=100)
    identical = kernel_inception_distance(feature_set(x), feature_set(x), subset_size=100)
    different = kernel_inception_distance(feature_set(x), feature_set(z), subset_size=100)
    assert different.mean > 0.5
    assert abs(same.mean) < 0.02 * different.mean and abs(identical.mean) < 0.02 * different.mean
    assert different.subset_size == 100 and different.subsets == 100


def test_kid_clamps_subset_size_and_is_reproducible() -> None:
    rng = np.random.default_rng(2)
    x, y = feature_set(rng.normal(size=(30, 4))), feature_set(rng.normal(size=(20, 4)))
    first = kernel_inception_distance(x, y, subsets=10, seed=3)
    assert first.subset_size == 20  # clamped from the default 1000 to the smaller set
    assert kernel_inception_distance(x, y, subsets=10, seed=3) == first
    assert first.to_dict()["kid_subset_size"] == 20


def test_inception_score_uniform_logits_is_one() -> None:
    result = inception_score(feature_set(np.zeros((40, 8)), logits=np.zeros((40, 10))), splits=4)
    assert result.mean == pytest.approx(1.0, abs=1e-9) and result.std == pytest.approx(0.0, abs=1e-9)
    assert result.splits == 4


def test_inception_score_matches_formula_on_raw_logits() -> None:
    # One split is order-free: exp(mean KL(p(y|x) || p(y))). Equality also shows the logits reach
    # torchmetrics unchanged (normalize=True would cast them to bytes).
    logits = np.random.default_rng(3).normal(0, 3, size=(12, 6))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = np.exp((p * (np.log(p) - np.log(p.mean(0)))).sum(1).mean())
    result = inception_score(feature_set(np.zeros((12, 2)), logits=logits), splits=1)
    assert result.mean == pytest.approx(expected, rel=1e-5)
    assert result.std is None and result.to_dict()["IS[tiny]_std"] is None


def test_inception_score_needs_logits() -> None:
    with pytest.raises(RsgenError, match="logits"):
        inception_score(feature_set(np.zeros((4, 2))))


def test_features_of_different_extractors_are_not_compared() -> None:
    with pytest.raises(RsgenError, match="different extractors"):
        frechet_distance(feature_set(np.ones((3, 2)), "a"), feature_set(np.ones((3, 2)), "b"))


# --------------------------------------------------------------------------- streaming


def test_streaming_batches_give_the_same_fd(tmp_path: Path) -> None:
    real, fake = make_folder(tmp_path / "real", 7), make_folder(tmp_path / "fake", 6, seed=20)
    extractor = TinyExtractor()
    streamed = frechet_distance(real, fake, extractor, batch_size=2, progress=False)
    one_batch = frechet_distance(real, fake, extractor, batch_size=64, progress=False)
    assert streamed.value == pytest.approx(one_batch.value, rel=1e-6) and streamed.value > 0
    assert (streamed.n_real, streamed.n_fake) == (7, 6)


def test_folder_and_tensor_inputs_agree_and_sizes_may_mix(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "mixed", 3)
    Image.fromarray(textured_image((24, 40), seed=9)).save(folder / "wide.jpg")
    extractor = TinyExtractor()
    from_folder = extract_features(folder, extractor, batch_size=3, progress=False)
    assert from_folder.features.shape == (4, 8) and from_folder.source == str(folder)
    arrays = [np.asarray(Image.open(folder / f"img{i:02d}.png")) for i in range(3)]
    tensor = torch.tensor(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1
    from_tensor = extract_features(tensor, extractor)
    torch.testing.assert_close(from_tensor.features, from_folder.features[:3], rtol=1e-5, atol=1e-5)


def test_reference_features_are_reused(tmp_path: Path) -> None:
    real, fake = make_folder(tmp_path / "real", 5), make_folder(tmp_path / "fake", 5, seed=30)
    extractor = TinyExtractor()
    reference = extract_features(real, extractor, progress=False)
    saved = FeatureSet.load(reference.save(tmp_path / "real.npz"))
    direct = frechet_distance(real, fake, extractor, progress=False)
    assert frechet_distance(saved, fake, extractor, progress=False).value == pytest.approx(direct.value)
    both = evaluate_generative(saved, fake, extractor, progress=False)
    assert both.fd.value == pytest.approx(direct.value) and both.inception is not None


def test_extractor_works_as_a_torchmetrics_custom_feature(tmp_path: Path) -> None:
    # Our [-1, 1] float images reach the extractor unchanged when torchmetrics calls it itself.
    from torchmetrics.image.fid import FrechetInceptionDistance

    generator = torch.Generator().manual_seed(0)
    real = torch.rand(10, 3, 16, 16, generator=generator) * 2 - 1
    fake = (torch.rand(9, 3, 16, 16, generator=generator) * 2 - 1) * 0.5
    extractor = TinyExtractor()
    metric = FrechetInceptionDistance(feature=extractor, normalize=True)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    ours = frechet_distance(real, fake, extractor)
    assert float(metric.compute()) == pytest.approx(ours.value, rel=1e-4)


# --------------------------------------------------------------------------- labels


def test_labels_are_honest() -> None:
    assert metric_label("FD", "efficientnet-lite0") == "FD[efficientnet-lite0]"
    assert metric_label("FD", "rs-scene") == "FD[rs-scene]"
    assert metric_label("FD", "inception-v3") == "FID[inception-v3]"
    assert metric_label("KID", "inception-v3") == "KID[inception-v3]"
    assert metric_label("IS", "rs-scene") == "IS[rs-scene]"
    assert TinyExtractor().metric_label("FD") == "FD[tiny]"
    assert "FID[inception-v3]" in FDResult(1.0, "inception-v3", 2, 2).to_dict()
    keys = FDResult(1.0, "efficientnet-lite0", 2, 2).to_dict()
    assert "FD[efficientnet-lite0]" in keys and not any(k.startswith("FID") for k in keys)


def test_unknown_extractor_and_missing_inception_weights() -> None:
    with pytest.raises(RsgenError, match="unknown feature extractor 'bogus'.*efficientnet-lite0"):
        build_metric_extractor("bogus")
    with pytest.raises(RsgenError, match="not shipped.*--inception-weights"):
        build_metric_extractor("inception-v3")


# --------------------------------------------------------------------------- CLIP score


def test_clip_score_matches_manual_formula_with_clamp() -> None:
    generator = torch.Generator().manual_seed(4)
    images = torch.rand(6, 3, 12, 10, generator=generator) * 2 - 1
    captions = ["red", "green", "blue", "red green", "blue", "green blue"]
    model = TinyCLIP()
    result = clip_score(images, captions, model, batch_size=4)
    with torch.no_grad():
        cos = F.cosine_similarity(model.encode_image(images), model.encode_text(captions), dim=-1)
    assert (cos < 0).any(), "the test needs some negative cosines"
    expected = float((100 * cos.clamp(min=0)).mean())
    assert result.score == pytest.approx(expected, rel=1e-5)
    assert result.n_clamped == int((cos < 0).sum()) and result.n == result.n_pairs == 6
    assert result.to_dict()["CLIPScore[tiny-clip]"] == result.score


def test_clip_score_jsonl_caption_lists_average_per_image(tmp_path: Path) -> None:
    solid(tmp_path / "img" / "r.png", (255, 0, 0))
    solid(tmp_path / "img" / "b.png", (0, 0, 255))
    captions = tmp_path / "captions.jsonl"
    lines = [{"file": "r.png", "captions": ["red", "blue"]}, {"file": "b.png", "caption": "blue"}]
    captions.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    result = clip_score(tmp_path / "img", captions, TinyCLIP(), progress=False)
    # r.png: (100 + max(-1/3, 0) * 100) / 2 = 50; b.png: 100; mean over images 75
    assert result.score == pytest.approx(75.0, abs=1e-3)
    assert (result.n, result.n_pairs, result.n_clamped) == (2, 3, 1)


def test_txt_captions_follow_sorted_images(tmp_path: Path) -> None:
    solid(tmp_path / "img" / "b.png", (0, 0, 255))
    solid(tmp_path / "img" / "a.png", (255, 0, 0))
    (tmp_path / "c.txt").write_text("red\nblue\n\n")
    pairs = read_captions(tmp_path / "c.txt", tmp_path / "img")
    assert [(p.path.name, p.captions) for p in pairs] == [("a.png", ("red",)), ("b.png", ("blue",))]
    assert clip_score(tmp_path / "img", tmp_path / "c.txt", TinyCLIP()).score == pytest.approx(100, abs=1e-3)


def test_shared_captions_file_is_readable() -> None:
    root = needs_shared("rsicd_aid150")
    pairs = read_captions(root / "captions.jsonl", root / "images")
    assert len(pairs) == 4500 and all(len(p.captions) == 5 for p in pairs)


# --------------------------------------------------------------------------- command line


@pytest.fixture
def tiny_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the commands use TinyExtractor and TinyCLIP instead of the real networks."""
    from rsgen.metrics import features as features_module
    from rsgen.models import loading

    def build(name: str, weights: object = None) -> TinyExtractor:
        return TinyExtractor("inception-v3" if name == "inception-v3" else "tiny")

    monkeypatch.setattr(features_module, "build_metric_extractor", build)
    monkeypatch.setattr(loading, "load_image_text_model", lambda name, device="cpu": TinyCLIP())


def test_cli_fid_json_self_is_zero_with_efficientnet(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "set", 4)
    result = run_cli("eval", "fid", folder, folder, "--json", "--batch-size", "3").ok()
    data = result.json()  # progress bars went to stderr: stdout is one JSON object
    assert abs(data["FD[efficientnet-lite0]"]) < 1e-2
    assert data["features"] == "efficientnet-lite0" and data["n_real"] == data["n_fake"] == 4
    assert {"KID[efficientnet-lite0]", "KID[efficientnet-lite0]_std", "IS[efficientnet-lite0]"} <= set(data)
    assert data["kid_subset_size"] == 4 and data["is_splits"] == 2
    assert not any(key.startswith("FID") for key in data)


def test_cli_fid_table_and_flags(tmp_path: Path, tiny_models: None) -> None:
    real, fake = make_folder(tmp_path / "r", 4), make_folder(tmp_path / "f", 3, seed=7)
    data = run_cli("eval", "fid", real, fake, "--no-kid", "--no-is", "--json", "-q").ok().json()
    assert data["FD[tiny]"] > 0 and not any(k.startswith(("KID", "IS")) for k in data)
    table = run_cli("eval", "fid", real, fake, "-q").ok()
    assert "FD[tiny]" in table.stdout and "IS[tiny]" in table.stdout


def test_cli_fid_is_called_fid_only_on_inception(tmp_path: Path, tiny_models: None) -> None:
    real, fake = make_folder(tmp_path / "r", 3), make_folder(tmp_path / "f", 3, seed=7)
    weights = tmp_path / "pt_inception.pth"
    weights.write_bytes(b"stand-in: the extractor is replaced by TinyExtractor")
    args = [
        "eval",
        "fid",
        str(real),
        str(fake),
        "--features",
        "inception-v3",
        "--inception-weights",
        str(weights),
    ]
    data = run_cli(*args, "--json", "-q").ok().json()
    assert {"FID[inception-v3]", "KID[inception-v3]", "IS[inception-v3]"} <= set(data)
    assert not any(key.startswith("FD[") or key == "FID" for key in data)


def test_cli_clip_json(tmp_path: Path, tiny_models: None) -> None:
    solid(tmp_path / "img" / "a.png", (255, 0, 0))
    solid(tmp_path / "img" / "b.png", (0, 0, 255))
    (tmp_path / "c.txt").write_text("red\nred\n")
    data = run_cli("eval", "clip", tmp_path / "img", tmp_path / "c.txt", "--json").ok().json()
    assert data["CLIPScore[tiny-clip]"] == pytest.approx(50.0, abs=1e-3)
    assert data["model"] == "tiny-clip" and data["n"] == 2 and data["n_clamped"] == 1


def _gray(folder: Path) -> tuple[list[Any], list[Any]]:
    bad = folder / "a_gray.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(bad)
    return [folder, folder], [bad, "grayscale (1 band)", "3-band"]


def _rgba(folder: Path) -> tuple[list[Any], list[Any]]:
    bad = folder / "a_rgba.png"
    Image.fromarray(np.zeros((16, 16, 4), np.uint8)).save(bad)
    return [folder, folder], [bad, "RGBA"]


def _empty(folder: Path) -> tuple[list[Any], list[Any]]:
    empty = folder.parent / "empty"
    empty.mkdir()
    return [empty, folder], [empty, "no images"]


def _missing(folder: Path) -> tuple[list[Any], list[Any]]:
    return [folder, folder.parent / "nope"], [folder.parent / "nope", "no such file or folder"]


def _no_inception_weights(folder: Path) -> tuple[list[Any], list[Any]]:
    return [folder, folder, "--features", "inception-v3"], ["not shipped", "--inception-weights"]


def _bogus_features(folder: Path) -> tuple[list[Any], list[Any]]:
    return [folder, folder, "--features", "bogus"], ["unknown feature extractor 'bogus'"]


FID_CASES = {
    "grayscale": _gray,
    "rgba": _rgba,
    "empty folder": _empty,
    "missing folder": _missing,
    "inception without weights": _no_inception_weights,
    "bogus features": _bogus_features,
}


@pytest.mark.parametrize("case", FID_CASES)
def test_cli_fid_bad_input(case: str, tmp_path: Path, tiny_models: None) -> None:
    args, expected = FID_CASES[case](make_folder(tmp_path / "good", 3))
    result = run_cli("eval", "fid", *args, "--json", "-q")
    assert result.code == 1, result.stderr
    line = result.error_line()
    for text in expected:
        assert str(text) in line


@pytest.mark.parametrize(
    ("features", "expected"),
    [("efficientnet-lite0", "not an EfficientNet-Lite0 weight file"), ("inception-v3", "Inception")],
)
def test_cli_fid_wrong_architecture_weights(features: str, expected: str, tmp_path: Path) -> None:
    weights = tmp_path / "linear.pth"
    torch.save(nn.Linear(3, 2).state_dict(), weights)
    folder = make_folder(tmp_path / "good", 2)
    args = ["eval", "fid", folder, folder, "--features", features, "--weights", weights, "-q"]
    result = run_cli(*args)
    assert result.code == 1, result.stderr
    line = result.error_line()
    assert str(weights) in line and expected in line


def _txt_mismatch(images: Path) -> tuple[Path, list[Any]]:
    path = images.parent / "c.txt"
    path.write_text("red\n")
    return path, [path, "2 images", "but 1 captions"]


def _broken_jsonl(images: Path) -> tuple[Path, list[Any]]:
    path = images.parent / "c.jsonl"
    path.write_text('{"file": "a.png", "caption": "red"}\n{"file": "b.png", "caption": \n')
    return path, [path, "line 2", "not valid JSON"]


def _missing_image(images: Path) -> tuple[Path, list[Any]]:
    path = images.parent / "c.jsonl"
    path.write_text('{"file": "nope.png", "caption": "red"}\n')
    return path, [path, "line 1", "'nope.png' not found"]


def _image_outside_the_folder(images: Path) -> tuple[Path, list[Any]]:
    outside = images.parent / "secret.png"
    solid(outside, (0, 255, 0))  # it exists: only its place is wrong
    path = images.parent / "c.jsonl"
    path.write_text('{"file": "a.png", "caption": "red"}\n{"file": "../secret.png", "caption": "green"}\n')
    return path, [path, "line 2", "'../secret.png' is outside the image folder"]


def _absolute_image_path(images: Path) -> tuple[Path, list[Any]]:
    path = images.parent / "c.jsonl"
    path.write_text(json.dumps({"file": str(images / "a.png"), "caption": "red"}) + "\n")
    return path, [path, "line 1", "is outside the image folder"]


def _empty_caption(images: Path) -> tuple[Path, list[Any]]:
    path = images.parent / "c.jsonl"
    path.write_text('{"file": "a.png", "prompt": "red"}\n\n{"file": "b.png", "captions": ["blue", " "]}\n')
    return path, [path, "line 3", "empty caption"]


CLIP_CASES = {
    "txt count mismatch": _txt_mismatch,
    "broken jsonl line": _broken_jsonl,
    "jsonl names a missing image": _missing_image,
    "jsonl reaches outside the folder": _image_outside_the_folder,
    "jsonl gives an absolute path": _absolute_image_path,
    "empty caption": _empty_caption,
}


@pytest.mark.parametrize("case", CLIP_CASES)
def test_cli_clip_bad_input(case: str, tmp_path: Path, tiny_models: None) -> None:
    images = tmp_path / "img"
    solid(images / "a.png", (255, 0, 0))
    solid(images / "b.png", (0, 0, 255))
    captions, expected = CLIP_CASES[case](images)
    result = run_cli("eval", "clip", images, captions, "--json")
    assert result.code == 1, result.stderr
    line = result.error_line()
    for text in expected:
        assert str(text) in line


# --------------------------------------------------------------------------- benchmark smoke test


@pytest.mark.slow
def test_bench_embed_smoke(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data", 8)
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable,
        str(REPO / "benchmarks" / "bench_embed.py"),
        "--limit", "8", "--repeats", "1", "--batch-size", "4", "--text-batch-size", "8", "--threads", "1",
        "--data", str(data), "--model", str(tmp_path / "no-such-model.pt"), "--json", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    by_section = {(r["section"], r["status"]) for r in rows}
    assert ("image embedding", "ok") in by_section and ("text embedding", "skipped") in by_section
    extractor, stream = rows[0], rows[-1]
    assert extractor["per_s"] > 0 and extractor["peak_rss_mib"] > 0
    assert stream["section"].startswith("stream") and stream["batch"] == 8 and stream["per_s"] > 0
    assert all(r["note"] for r in rows if r["status"] == "skipped")
    assert "| section |" in proc.stdout
