"""The shipped models: stored in fp16, they load offline, DEGAN beats bicubic on real imagery and
tiles seamlessly."""

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from rsgen.data.degradation import bicubic_downscale
from rsgen.io import list_images, read_rgb_uint8
from rsgen.metrics import evaluate_sr
from rsgen.models.loading import load_image_text_model, model_class
from rsgen.models.scene_classifier import SceneClassifier
from rsgen.pipelines import Editor, SuperResolver
from rsgen.shipped import WEIGHTS_DIR, available_models
from tests.conftest import needs_shared

SHIPPED = available_models()
FLOAT_DTYPES = {"F8_E4M3", "F8_E5M2", "F16", "BF16", "F32", "F64"}

# How users load a shipped model folder, by its config's model name (any other name: model_class).
LOADERS: dict[str, Callable[[str, dict[str, Any]], torch.nn.Module]] = {
    "degan_generator": lambda name, config: (
        SuperResolver.from_pretrained(name, scale=config["scale"]).generator
    ),
    "rs_clip": lambda name, config: load_image_text_model(name),
    "scene_classifier": lambda name, config: SceneClassifier.from_pretrained(name),
}
# How users load a shipped pipeline folder (model_index.json), by its pipeline name.
PIPELINES = {"super_resolution": SuperResolver, "editor": Editor}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: any attempt to open a connection fails, as on an offline laptop."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def component_folders(folder: Path) -> dict[str, Path]:
    """A model folder is its own single component; a pipeline folder holds one per subfolder."""
    index = folder / "model_index.json"
    if not index.is_file():
        return {"": folder}
    components = json.loads(index.read_text())["components"]
    return {name: folder / name for name in components}


def stored_dtypes(weights: Path) -> dict[str, str]:
    with safe_open(str(weights), "pt") as stored:
        return {key: stored.get_slice(key).get_dtype() for key in stored.keys()}  # noqa: SIM118


def test_the_known_models_ship() -> None:
    assert {"degan-x2", "degan-x4", "rs-clip", "rs-scene"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_is_fp16_and_loads_offline(name: str, offline: None) -> None:
    folder = WEIGHTS_DIR / name
    weight_files = sorted(folder.rglob("model.safetensors"))
    assert weight_files, f"{name}: no model.safetensors"
    for weights in weight_files:
        dtypes = stored_dtypes(weights)
        floating = {key: dtype for key, dtype in dtypes.items() if dtype in FLOAT_DTYPES}
        assert floating, f"{weights}: no floating-point tensors"
        not_fp16 = {key: dtype for key, dtype in floating.items() if dtype != "F16"}
        assert not not_fp16, f"{weights}: not stored in fp16: {not_fp16}"

    index = folder / "model_index.json"
    pipeline_class = PIPELINES.get(json.loads(index.read_text())["pipeline"]) if index.is_file() else None
    pipeline = pipeline_class.from_pretrained(name) if pipeline_class else None
    for component, directory in component_folders(folder).items():
        config = json.loads((directory / "config.json").read_text())
        if "model" not in config:  # a noise scheduler: a config, no weights
            assert "scheduler" in config and not (directory / "model.safetensors").exists(), directory
            continue
        model_name = config["model"]["name"]
        if pipeline is not None:
            model = pipeline.components()[component]
        elif directory == folder and model_name in LOADERS:  # by its shipped name
            model = LOADERS[model_name](name, config["model"])
        else:
            model = model_class(model_name).from_pretrained(directory)
        assert isinstance(model, model_class(model_name)), (directory, type(model))
        assert all(p.dtype == torch.float32 for p in model.parameters() if p.is_floating_point())


@pytest.mark.slow
@pytest.mark.parametrize("scale", [2, 4])
def test_shipped_model_beats_bicubic_on_rsscn7_val(scale):
    files = list_images(needs_shared("RSSCN7", "val"))[::47][:3]
    sr = SuperResolver.from_pretrained(f"degan-x{scale}")
    result = evaluate_sr(files, scale, sr, sr.name, progress=False)
    assert result.gain_db_rgb > 0.3 and result.model.ssim_rgb > result.bicubic.ssim_rgb


def test_tiled_output_matches_whole_image_for_the_shipped_model():
    hr = read_rgb_uint8(list_images(needs_shared("RSSCN7", "val"))[0])[:192, :192]
    lr = np.array(bicubic_downscale(Image.fromarray(hr), 2))
    sr = SuperResolver.from_pretrained("degan-x2")
    whole = sr.upscale_tensor(torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255)[0]
    whole = (whole * 255).round().permute(1, 2, 0).numpy()
    sr.tile, sr.overlap = 40, 16
    tiled = sr(lr).astype(np.float64)
    difference = np.abs(tiled - whole)
    # The bottleneck Transformer attends over the whole tile, so tiles see less context than
    # the whole image: a small difference, far below what a seam would show.
    assert difference.mean() < 0.5 and np.percentile(difference, 99) <= 3


def test_a_local_folder_that_is_not_a_model_does_not_hide_a_shipped_name(tmp_path, monkeypatch):
    from rsgen.shipped import WEIGHTS_DIR, resolve_model_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "rs-clip").mkdir()  # say a training run of that name
    assert resolve_model_path("rs-clip") == WEIGHTS_DIR / "rs-clip"
    (tmp_path / "rs-clip" / "config.json").write_text("{}")  # a model folder: it wins
    assert resolve_model_path("rs-clip") == Path("rs-clip")
