"""The text-to-image tokenizer: shapes, encode/decode, codebook usage, folders, its training task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rsgen.errors import RsgenError
from rsgen.models import build_model
from rsgen.models.vq_tokenizer import VQTokenizer, VQTokenizerConfig, codebook_usage
from rsgen.train.loop import run_training

TINY = {"name": "vq_tokenizer", "channels": [8, 16], "res_blocks": 1, "codebook_size": 32, "code_dim": 8}


def tiny_tokenizer() -> VQTokenizer:
    torch.manual_seed(0)
    return build_model(TINY).eval()


def test_encode_decode_agree_with_the_forward_pass():
    model = tiny_tokenizer()
    images = torch.rand(3, 3, 16, 24) * 2 - 1
    reconstruction, ids, _ = model(images)
    assert ids.shape == (3, 8, 12) and ids.dtype == torch.int64 and ids.min() >= 0 and ids.max() < 32
    assert reconstruction.shape == images.shape and reconstruction.abs().max() <= 1
    assert torch.equal(model.encode(images), ids)
    assert torch.allclose(model.decode(ids), reconstruction, atol=1e-5)


@pytest.mark.parametrize(
    "switches", [{"lookup_dim": 4, "cosine": True}, {"cosine": True, "kmeans_init": True}]
)
def test_low_dimensional_cosine_lookup_encodes_decodes_and_round_trips(switches, tmp_path: Path):
    torch.manual_seed(0)
    model = build_model({**TINY, **switches, "dead_code_threshold": 0.5})
    images = torch.rand(3, 3, 16, 24) * 2 - 1
    model.train()(images)  # k-means initialisation and one EMA update
    model.eval()
    reconstruction, ids, _ = model(images)
    assert ids.shape == (3, 8, 12) and ids.max() < 32
    assert torch.allclose(model.decode(ids), reconstruction, atol=1e-5)
    if "lookup_dim" in switches:  # the encoder's 8-d vectors are looked up as 4-d codes
        assert model.quantizer.codebook.shape == (32, 4)
    loaded = VQTokenizer.from_pretrained(model.save_pretrained(tmp_path / "tok", dtype=torch.float32))
    assert torch.equal(loaded.encode(images), ids)


def test_training_mode_moves_the_codebook_and_encode_does_not():
    model = tiny_tokenizer()
    codebook = model.quantizer.codebook.clone()
    model.encode(torch.rand(2, 3, 16, 16))
    assert torch.equal(model.quantizer.codebook, codebook) and not model.training
    model.train()(torch.rand(2, 3, 16, 16))
    assert not torch.equal(model.quantizer.codebook, codebook)


def test_folder_round_trip_keeps_the_tokens(tmp_path: Path):
    model = tiny_tokenizer()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    folder = model.save_pretrained(tmp_path / "tok", dtype=torch.float32)
    loaded = VQTokenizer.from_pretrained(folder)
    assert torch.equal(loaded.encode(images), model.encode(images))
    assert json.loads((folder / "config.json").read_text())["model"]["name"] == "vq_tokenizer"


def test_codebook_usage_closed_forms():
    assert codebook_usage(torch.zeros(100, dtype=torch.long), 8) == {
        "perplexity": 1.0,
        "used_fraction": 0.125,
    }
    uniform = codebook_usage(torch.arange(8).repeat(10), 8)
    assert uniform["perplexity"] == pytest.approx(8.0) and uniform["used_fraction"] == 1.0


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="channels"):
        VQTokenizerConfig(channels=[8])
    with pytest.raises(ValueError, match="codebook_decay"):
        VQTokenizerConfig(codebook_decay=1.0)
    with pytest.raises(ValueError, match="lookup_dim"):
        VQTokenizerConfig(code_dim=8, lookup_dim=16)
    with pytest.raises(ValueError, match="dead_code_threshold"):
        VQTokenizerConfig(dead_code_threshold=-1.0)
    with pytest.raises(ValueError, match="divisible by 2"):
        tiny_tokenizer()(torch.zeros(1, 3, 15, 16))
    with pytest.raises(RsgenError, match="invalid model config"):
        VQTokenizer.from_config({**TINY, "code_dim": 0})


def test_training_task_learns_and_exports_the_best(caption_folder: Path, tmp_path: Path):
    config = {
        "task": "vq_tokenizer",
        "seed": 0,
        "model": TINY,
        "data": {
            "dir": str(caption_folder),
            "split": "train",
            "val_fraction": 0.25,
            "image_size": 32,
            "load_size": 40,
        },
        "train": {
            "steps": 30,
            "batch_size": 4,
            "lr": 3e-3,
            "warmup_steps": 2,
            "grad_clip": 1.0,
            "log_every": 10,
            "eval_every": 10,
            "checkpoint_every": 10,
        },
        "loss": {"l1": 1.0, "perceptual": 0.0},
    }
    run_training(config, tmp_path / "run", progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    evals = [r for r in records if r.get("event") == "eval"]
    assert [r["step"] for r in evals] == [10, 20, 30]
    assert evals[-1]["val_psnr"] > evals[0]["val_psnr"]  # it learns
    assert 0 < evals[-1]["val_used_fraction"] <= 1 and evals[-1]["val_perplexity"] >= 1
    best = VQTokenizer.from_pretrained(tmp_path / "run" / "best")
    step = json.loads((tmp_path / "run" / "best" / "config.json").read_text())["training"]["step"]
    assert best.config.codebook_size == 32 and step == max(evals, key=lambda r: r["val_psnr"])["step"]


def tokenizer_config(caption_folder: Path, **train: object) -> dict:
    return {
        "task": "vq_tokenizer",
        "seed": 0,
        "model": TINY,
        "data": {"dir": str(caption_folder), "split": "train", "val_fraction": 0.25, "image_size": 32},
        "train": {"steps": 6, "batch_size": 4, "lr": 3e-3, "log_every": 2, "eval_every": 3, **train},
        "loss": {"l1": 1.0, "perceptual": 0.0},
    }


def test_decoder_only_gan_finetune_keeps_the_tokens_and_resumes(caption_folder: Path, tmp_path: Path):
    start = tiny_tokenizer().save_pretrained(tmp_path / "start", dtype=torch.float32)
    config = tokenizer_config(caption_folder, trainable="decoder", select="val_fd_scene")
    config.pop("model")
    config.update(
        init=str(start),
        discriminator={"channels": 8, "layers": 2},
        loss={"l1": 1.0, "perceptual": 0.0, "gan": 0.5, "gan_start": 2},
    )
    run_training(config, tmp_path / "run", progress=False, max_steps=3)
    run_training(config, tmp_path / "run", progress=False, resume=True)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "d_loss" in r]
    assert steps and all(r["d_loss"] >= 0 for r in steps)
    assert any("gan_weight" in r for r in steps) and all(r["step"] >= 2 for r in steps if "gan_weight" in r)
    evals = [r for r in records if r.get("event") == "eval"]
    assert [r["step"] for r in evals] == [3, 6] and all(r["val_fd_scene"] >= 0 for r in evals)
    best_step = json.loads((tmp_path / "run" / "best" / "config.json").read_text())["training"]["step"]
    assert best_step == min(evals, key=lambda r: r["val_fd_scene"])["step"]

    before, after = (
        VQTokenizer.from_pretrained(start),
        VQTokenizer.from_pretrained(tmp_path / "run" / "final"),
    )
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    assert torch.equal(before.encode(images), after.encode(images))  # same tokens
    assert torch.equal(before.quantizer.codebook.half().float(), after.quantizer.codebook)  # exported in fp16
    assert not torch.equal(before.last_layer, after.last_layer)  # a new decoder


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"init": "MISSING"}, "no such model folder"),
        ({"init": "START", "model": {**TINY, "code_dim": 4}}, "differs from the config's model"),
        ({"train": {"select": "val_fid"}}, "train.select must be one of"),
        ({"train": {"trainable": "encoder"}}, "train.trainable must be one of"),
    ],
)
def test_bad_finetune_options_are_refused(caption_folder: Path, tmp_path: Path, change: dict, message: str):
    start = tiny_tokenizer().save_pretrained(tmp_path / "start", dtype=torch.float32)
    config = tokenizer_config(caption_folder)
    for key, value in change.items():
        if key == "init":
            value = str(start) if value == "START" else str(tmp_path / value)
        config[key] = {**config[key], **value} if key == "train" else value
    with pytest.raises(RsgenError, match=message):
        run_training(config, tmp_path / "run", progress=False)
