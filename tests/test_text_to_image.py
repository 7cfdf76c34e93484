"""TextToImage and ``rsgen generate`` on tiny random components (16 px images, 8 x 8 tokens)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rsgen.diffusion import build_scheduler
from rsgen.errors import RsgenError
from rsgen.models.diffusion_transformer import DiffusionTransformer
from rsgen.models.vq_tokenizer import VQTokenizer
from rsgen.pipelines import GenerationResult, TextToImage
from rsgen.pipelines.text_to_image import PromptTruncatedWarning
from tests.conftest import run_cli

TOKENIZER = {"name": "vq_tokenizer", "channels": [8, 16], "codebook_size": 16, "code_dim": 8}
SCHEDULER = {"name": "vq_diffusion", "num_classes": 16, "num_train_timesteps": 10}
SIZE = 16  # 8 x 8 tokens, downsample 2


def tiny_pipeline(codebook: int = 16) -> TextToImage:
    torch.manual_seed(0)
    transformer = DiffusionTransformer.from_config(
        {
            "name": "rsvq_transformer",
            "num_classes": codebook,
            "grid": [SIZE // 2, SIZE // 2],
            "width": 32,
            "depth": 1,
            "heads": 2,
            "window": 4,
            "num_timesteps": 10,
        }
    )
    return TextToImage(
        VQTokenizer.from_config(TOKENIZER),
        transformer,
        build_scheduler(SCHEDULER),
        device="cpu",
        progress=False,
    )


@pytest.fixture(scope="module")
def pipe() -> TextToImage:
    return tiny_pipeline()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, pipe: TextToImage) -> Path:
    return pipe.save_pretrained(tmp_path_factory.mktemp("t2i") / "tiny-t2i")


def pixels(result: GenerationResult) -> list[np.ndarray]:
    return [np.asarray(image) for image in result.images]


def test_images_size_type_and_seeds(pipe):
    result = pipe(["a river", "dense forest"], num_images=2, seed=3, steps=4, guidance=3.0)
    assert isinstance(result, GenerationResult) and len(result.images) == 4
    assert all(
        isinstance(im, Image.Image) and im.size == (SIZE, SIZE) and im.mode == "RGB" for im in result.images
    )
    assert result.seed == 3 and result.prompts == ["a river", "dense forest"] and result.seconds > 0
    assert result.settings == {"num_images": 2, "steps": 4, "guidance": 3.0, "truncation": 1.0}
    again = pipe("a river", num_images=2, seed=3, steps=4, guidance=3.0)
    assert all((a == b).all() for a, b in zip(pixels(again), pixels(result)[:2], strict=True))
    other = pipe("a river", num_images=2, seed=4, steps=4, guidance=3.0)
    assert any((a != b).any() for a, b in zip(pixels(other), pixels(again), strict=True))
    default = pipe("a river")
    assert isinstance(default.seed, int) and default.settings["steps"] == 10  # min(25, T); random seed


@pytest.mark.parametrize("guidance", [0.0, 1.0, 3.0])
def test_guidance_and_truncation_run(pipe, guidance):
    result = pipe("a harbour", seed=0, steps=3, guidance=guidance, truncation=0.9)
    assert result.images[0].size == (SIZE, SIZE) and result.settings["truncation"] == 0.9
    assert pipe.scheduler.config.truncation_rate == 1.0  # the shared scheduler is untouched


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": "  "}, "prompt must be non-empty"),
        ({"prompt": []}, "no prompt"),
        ({"num_images": 0}, "number of images"),
        ({"steps": 0}, "steps must be in 1..10"),
        ({"steps": 11}, "steps must be in 1..10"),
        ({"guidance": -1.0}, "guidance must be >= 0"),
        ({"truncation": 0.0}, "truncation must be in"),
    ],
)
def test_bad_arguments(pipe, kwargs, message):
    with pytest.raises(RsgenError, match=message):
        pipe(**{"prompt": "a river", **kwargs})


def test_long_prompt_warns_and_runs(pipe):
    with pytest.warns(PromptTruncatedWarning):
        result = pipe("a wide river " * 40, steps=1, seed=0)
    assert len(result.images) == 1


def test_folder_round_trip_and_mismatch(pipe, model_dir, monkeypatch):
    index = json.loads((model_dir / "model_index.json").read_text())
    assert index == {
        "pipeline": "text_to_image",
        "components": {
            "tokenizer": "vq_tokenizer",
            "transformer": "rsvq_transformer",
            "scheduler": "vq_diffusion",
        },
    }
    loaded = TextToImage.from_pretrained(model_dir, device="cpu", progress=False)
    assert loaded.image_size == (SIZE, SIZE) and loaded.scheduler.config == pipe.scheduler.config
    a, b = pipe("a bridge", seed=5, steps=3), loaded("a bridge", seed=5, steps=3)
    assert a.images[0].size == b.images[0].size  # fp16 storage may move a token: sizes, not pixels
    with pytest.raises(RsgenError, match="codebook size"):
        tiny_pipeline(codebook=32)
    monkeypatch.setattr("rsgen.pipelines.text_to_image.WEIGHTS_DIR", model_dir / "no-weights")
    with pytest.raises(RsgenError, match="no trained text-to-image model is shipped yet"):
        TextToImage.from_pretrained()


# --------------------------------------------------------------------------- the command line


def test_cli_writes_images_grid_and_sidecar(model_dir, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "generate",
        "A river, seen from above!",
        "-n",
        "2",
        "--seed",
        "7",
        "--steps",
        "3",
        "--model",
        model_dir,
        "-o",
        out,
        "--json",
        "--quiet",
    ).ok()
    names = sorted(p.name for p in out.iterdir())
    stem = "a-river-seen-from-above_7"
    assert names == [f"{stem}.json", f"{stem}_0.png", f"{stem}_1.png", "grid.png"]
    sidecar = json.loads((out / f"{stem}.json").read_text())
    assert sidecar["prompt"] == "A river, seen from above!" and sidecar["seed"] == 7 and sidecar["steps"] == 3
    assert sidecar["guidance"] == 5.0 and sidecar["upscale"] is None and sidecar["model"] == "tiny-t2i"
    assert result.json()["results"] == [sidecar]
    with Image.open(out / "grid.png") as grid, Image.open(out / f"{stem}_0.png") as first:
        assert first.size == (SIZE, SIZE) and grid.size == (2 * SIZE, SIZE)


def test_cli_prompts_file_and_upscale(model_dir, tiny_model_dir, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a forest\n\nsome ships in a harbour\n")
    out = tmp_path / "out"
    run_cli(
        "generate",
        "--prompts",
        prompts,
        "--seed",
        "1",
        "--steps",
        "2",
        "--upscale",
        "2",
        "--upscale-model",
        tiny_model_dir,
        "--model",
        model_dir,
        "-o",
        out,
        "-q",
    ).ok()
    assert sorted(p.name for p in out.glob("*.png")) == [
        "a-forest_1_0.png",
        "some-ships-in-a-harbour_1_0.png",
    ]
    with Image.open(out / "a-forest_1_0.png") as image:
        assert image.size == (2 * SIZE, 2 * SIZE)
    assert json.loads((out / "a-forest_1.json").read_text())["upscale"] == 2


def test_cli_long_prompt_is_one_warning_line(model_dir, tmp_path):
    result = run_cli(
        "generate", "river " * 80, "--steps", "1", "--model", model_dir, "-o", tmp_path / "out", "-q"
    ).ok()
    assert [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert "Traceback" not in result.stderr and "warnings.warn" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a river", "-n", "0"], "number of images"),
        (["a river", "--steps", "0"], "steps must be in 1..10"),
        (["a river", "--steps", "11"], "steps must be in 1..10"),
        (["a river", "--guidance", "-1"], "guidance must be >= 0"),
        (["   "], "PROMPT is empty"),
        ([], "missing PROMPT"),
        (["a river", "--upscale", "3"], "--upscale must be 2 or 4"),
        (["a river", "--prompts", "PROMPTS"], "not both"),
        (["--prompts", "EMPTY"], "no prompts"),
        (["--prompts", "BINARY"], "not UTF-8"),
        (["--prompts", "MISSING"], "not found"),
        (["a river", "--model", "MISSING"], "no such model folder"),
        (["a river", "--model", "SR"], "not a text_to_image pipeline folder"),
        (["a river", "--model", "rsvq-cpu"], "no trained text-to-image model is shipped yet"),
        (["a river", "--seed", "-1"], "--seed must be in"),
        (["a river", "--truncation", "0"], "truncation must be in"),
        (["a river", "--upscale-model", "SR"], "--upscale-model needs --upscale"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(
    model_dir, tiny_model_dir, tmp_path, monkeypatch, args, message
):
    monkeypatch.setattr("rsgen.pipelines.text_to_image.WEIGHTS_DIR", tmp_path / "no-weights")
    files = {
        "PROMPTS": tmp_path / "p.txt",
        "EMPTY": tmp_path / "empty.txt",
        "BINARY": tmp_path / "bin.txt",
        "MISSING": tmp_path / "missing",
        "SR": tiny_model_dir,
    }
    files["PROMPTS"].write_text("a\n")
    files["EMPTY"].write_text("\n  \n")
    files["BINARY"].write_bytes(b"a river\n\xff\xfe\x00 forest\n")
    args = [str(files.get(arg, arg)) for arg in args]
    if "--model" not in args:
        args += ["--model", str(model_dir)]
    out = tmp_path / "out"
    result = run_cli("generate", *args, "-o", out)
    assert result.code != 0
    assert message in result.error_line()
    assert not out.exists()


def test_cli_help():
    result = run_cli("generate", "--help").ok()
    assert "Usage" in result.stdout and "--upscale-model" in result.stdout
