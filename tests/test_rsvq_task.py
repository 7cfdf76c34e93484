"""The training task of the RSVQ-Diffusion transformer (task ``rsvq``), on a tiny tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rsgen.errors import RsgenError
from rsgen.models.loading import build_model
from rsgen.pipelines.text_to_image import TextToImage
from rsgen.train.loop import run_training

CODES = 16


@pytest.fixture
def tokenizer_dir(tmp_path: Path) -> Path:
    """A 2-level (downsample 2) tokenizer with 16 codes: 16 px images -> 8 x 8 tokens."""
    model = build_model({"name": "vq_tokenizer", "channels": [8, 16], "codebook_size": CODES, "code_dim": 8})
    return model.save_pretrained(tmp_path / "tokenizer")


def tiny_config(caption_folder: Path, tokenizer: Path, steps: int = 6, **model: object) -> dict:
    return {
        "task": "rsvq",
        "seed": 0,
        "tokenizer": str(tokenizer),
        "model": {
            "name": "rsvq_transformer",
            "num_classes": CODES,
            "grid": [8, 8],
            "width": 32,
            "depth": 2,
            "heads": 2,
            "num_timesteps": 10,
            "window": 4,
            **model,
        },
        "scheduler": {"name": "vq_diffusion", "num_classes": CODES, "num_train_timesteps": 10},
        "data": {
            "dir": str(caption_folder),
            "split": "train",
            "val_fraction": 0.25,
            "image_size": 16,
            "load_size": 20,
        },
        "train": {
            "views": 2,
            "steps": steps,
            "batch_size": 4,
            "lr": 3e-3,
            "warmup_steps": 2,
            "text_drop": 0.25,
            "grad_clip": 1.0,
            "ema_decay": 0.8,
            "log_every": 3,
            "eval_every": 3,
            "checkpoint_every": 3,
        },
    }


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_training_logs_evaluates_and_exports_the_lowest_loss(
    caption_folder: Path, tokenizer_dir: Path, tmp_path
):
    run = tmp_path / "run"
    run_training(tiny_config(caption_folder, tokenizer_dir), run, progress=False)
    records = read_log(run)
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [3, 6] and all(r["loss"] > 0 and r["lr"] > 0 for r in steps)
    evals = [r for r in records if r.get("event") == "eval"]
    assert [r["step"] for r in evals] == [3, 6]
    for r in evals:
        assert r["val_loss"] > 0 and 0 <= r["val_token_acc"] <= 1
        assert {f"val_token_acc_t{t}" for t in (1, 3, 5, 7, 9)} <= r.keys()
    # best/ and final/ are whole text-to-image pipelines: the frozen tokenizer travels with them
    best = TextToImage.from_pretrained(run / "best", device="cpu")
    index = json.loads((run / "best" / "model_index.json").read_text())
    assert best.transformer.config.num_classes == CODES and best.grid == (8, 8)
    assert index["training"]["step"] == min(evals, key=lambda r: r["val_loss"])["step"]
    assert Path(index["tokenizer_source"]) == tokenizer_dir.resolve()
    assert best.scheduler.num_classes == CODES and best.max_steps == 10
    trained = load_file(str(tokenizer_dir / "model.safetensors"))
    shipped = load_file(str(run / "best" / "tokenizer" / "model.safetensors"))
    assert trained.keys() == shipped.keys()
    assert all(torch.equal(trained[k].half(), shipped[k]) for k in trained if trained[k].is_floating_point())
    TextToImage.from_pretrained(run / "final", device="cpu")
    # tokens and caption states were cached on disk once (RSGEN_CACHE is the test's folder)
    assert len(list((tmp_path / "cache" / "rsvq_tokens").glob("*.safetensors"))) == 1


def test_resume_replays_exactly(caption_folder: Path, tokenizer_dir: Path, tmp_path):
    config = tiny_config(caption_folder, tokenizer_dir, local_attention=False)
    straight = run_training(config, tmp_path / "straight", progress=False)
    run_training(config, tmp_path / "split", max_steps=3, progress=False)
    split = run_training(config, tmp_path / "split", resume=True, progress=False)
    assert straight["rank_checksums"] == split["rank_checksums"]
    a = load_file(str(tmp_path / "straight" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "split" / "checkpoint.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("ema.") for k in a)
    for key in a:
        assert (a[key] == b[key]).all(), key


def test_codebook_mismatch_and_missing_tokenizer_are_one_line_errors(
    caption_folder: Path, tokenizer_dir: Path, tmp_path
):
    config = tiny_config(caption_folder, tokenizer_dir, num_classes=32)
    with pytest.raises(RsgenError, match="num_classes 32 differs from the tokenizer's codebook size") as err:
        run_training(config, tmp_path / "a", progress=False)
    assert "\n" not in str(err.value)
    missing = tmp_path / "no-such-tokenizer"
    with pytest.raises(RsgenError, match="no trained tokenizer folder") as err:
        run_training(tiny_config(caption_folder, missing), tmp_path / "b", progress=False)
    assert str(missing) in str(err.value) and "\n" not in str(err.value)
    config = tiny_config(caption_folder, "~/no-such-rsgen-tokenizer")
    with pytest.raises(RsgenError, match=str(Path.home() / "no-such-rsgen-tokenizer")):
        run_training(config, tmp_path / "c", progress=False)


def test_the_tokenizer_may_be_a_shipped_one(tmp_path: Path):
    from rsgen.shipped import WEIGHTS_DIR
    from rsgen.train.tasks.rsvq import tokenizer_folder

    assert tokenizer_folder("rsvq-cpu/tokenizer") == WEIGHTS_DIR / "rsvq-cpu" / "tokenizer"
    with pytest.raises(RsgenError, match="no trained tokenizer folder"):
        tokenizer_folder(tmp_path / "missing")
