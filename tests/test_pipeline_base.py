"""The pipeline foundation: multi-component folders, plain model folders, seeds, input checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rsgen.diffusion import GaussianScheduler, GaussianSchedulerConfig, Scheduler
from rsgen.errors import RsgenError
from rsgen.models import DEGANDiscriminator, DEGANGenerator
from rsgen.pipelines.base import MODEL_INDEX_NAME, Pipeline, as_rgb_array
from tests.conftest import TINY_DISCRIMINATOR, TINY_MODEL


class ToyPipeline(Pipeline):
    """Two networks and a noise scheduler, as text-to-image and editing will have."""

    pipeline_name = "toy"
    component_classes = {"generator": DEGANGenerator, "critic": DEGANDiscriminator, "scheduler": Scheduler}

    def __init__(self, generator, critic, scheduler, device="cpu", **options):
        super().__init__(device, **options)
        self.generator, self.critic, self.scheduler = self.place(generator), self.place(critic), scheduler


def toy_pipeline() -> ToyPipeline:
    torch.manual_seed(0)
    return ToyPipeline(
        DEGANGenerator.from_config({**TINY_MODEL, "scale": 2}),
        DEGANDiscriminator.from_config(TINY_DISCRIMINATOR),
        GaussianScheduler(GaussianSchedulerConfig(num_train_timesteps=50, beta_schedule="cosine")),
    )


def test_multi_component_round_trip(tmp_path):
    pipe = toy_pipeline()
    folder = pipe.save_pretrained(tmp_path / "toy", extra={"note": "x"})
    index = json.loads((folder / MODEL_INDEX_NAME).read_text())
    assert index["pipeline"] == "toy" and index["note"] == "x"
    assert index["components"] == {
        "generator": "degan_generator",
        "critic": "degan_discriminator",
        "scheduler": "gaussian",
    }
    assert sorted(p.name for p in (folder / "scheduler").iterdir()) == ["config.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy"]  # nothing left beside it

    loaded = ToyPipeline.from_pretrained(folder, progress=False)
    assert loaded.scheduler.config == pipe.scheduler.config and not loaded.progress
    for name in ("generator", "critic"):
        ours, theirs = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        for key, value in ours.items():
            assert torch.allclose(value.float(), theirs[key].float(), atol=1e-2, rtol=1e-3), key
        assert not getattr(loaded, name).training


def test_broken_pipeline_folders_are_one_line_errors(tmp_path):
    folder = toy_pipeline().save_pretrained(tmp_path / "toy")
    index_path = folder / MODEL_INDEX_NAME
    index = json.loads(index_path.read_text())

    index_path.write_text(json.dumps({**index, "pipeline": "other"}))
    with pytest.raises(RsgenError, match="is a 'other' pipeline, not 'toy'"):
        ToyPipeline.from_pretrained(folder)
    index_path.write_text(json.dumps({**index, "components": {"generator": "degan_generator"}}))
    with pytest.raises(RsgenError, match="no critic, scheduler component"):
        ToyPipeline.from_pretrained(folder)
    index_path.write_text("{not json")
    with pytest.raises(RsgenError, match="corrupt model index"):
        ToyPipeline.from_pretrained(folder)
    index_path.write_text(json.dumps(index))
    (folder / "scheduler" / "config.json").write_text(json.dumps({"scheduler": {"name": "nope"}}))
    with pytest.raises(RsgenError, match="invalid scheduler config: unknown scheduler name 'nope'"):
        ToyPipeline.from_pretrained(folder)
    index_path.unlink()
    with pytest.raises(RsgenError, match=f"not a toy pipeline folder .*{MODEL_INDEX_NAME}"):
        ToyPipeline.from_pretrained(folder)


def test_one_component_pipeline_reads_a_plain_model_folder(tiny_model_dir):
    from rsgen.pipelines import SuperResolver

    sr = SuperResolver.from_pretrained(tiny_model_dir, device="cpu")
    assert sr.scale == 2 and sr.name == "tiny-x2"
    saved = sr.save_pretrained(tiny_model_dir.parent / "as-pipeline")
    assert (saved / MODEL_INDEX_NAME).is_file() and (saved / "generator" / "model.safetensors").is_file()
    again = SuperResolver.from_pretrained(saved, device="cpu")
    image = np.random.default_rng(0).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    difference = np.abs(sr(image).astype(int) - again(image).astype(int))
    assert difference.max() <= 2  # the pipeline folder stores the fp32 test model in fp16


def test_seeds_reproduce_and_are_reported():
    pipe = toy_pipeline()
    first, seed = pipe.random_generator(7)
    again, _ = pipe.random_generator(7)
    assert seed == 7 and torch.equal(torch.randn(5, generator=first), torch.randn(5, generator=again))
    fresh, drawn = pipe.random_generator(None)
    replay, _ = pipe.random_generator(drawn)
    assert torch.equal(torch.randn(5, generator=fresh), torch.randn(5, generator=replay))
    with pytest.raises(RsgenError, match="seed"):
        pipe.random_generator(-1)


def test_image_checks_match_the_cli():
    assert as_rgb_array(np.zeros((4, 5, 3), np.uint8)).shape == (4, 5, 3)
    with pytest.raises(RsgenError, match="at least 2 px"):
        as_rgb_array(np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(RsgenError, match="RGB uint8"):
        as_rgb_array(np.zeros((4, 4), np.float32))
