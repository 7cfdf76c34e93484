import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from rsgen.checkpoint import (
    load_training_state,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_training_state,
)
from rsgen.config import apply_overrides, builtin_config_names, load_config
from rsgen.errors import RsgenError
from rsgen.models import DEGANConfig, DEGANGenerator
from tests.conftest import TINY_MODEL


def test_inherit_and_overrides():
    paper, cpu = load_config("degan-paper"), load_config("degan-cpu")
    assert cpu["model"]["channels"] == 64 and cpu["model"]["attention"] == paper["model"]["attention"]
    baseline = load_config("ablations/degan-cpu-baseline")
    assert baseline["model"]["attention"] == "none" and baseline["model"]["channels"] == 64
    changed = apply_overrides(cpu, ["model.scale=2", "train.lr=1e-3", "model.stem_channels=[8, 16]"])
    assert changed["model"]["scale"] == 2 and changed["train"]["lr"] == 1e-3
    assert changed["model"]["stem_channels"] == [8, 16] and cpu["model"]["scale"] == 4
    assert "degan-cpu" in builtin_config_names()


def test_bad_config_inputs(tmp_path):
    with pytest.raises(RsgenError, match="unknown config"):
        load_config("no-such-config")
    with pytest.raises(RsgenError, match="section.key=value"):
        apply_overrides({}, ["nokey"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(RsgenError, match="bad.yaml"):
        load_config(bad)


def test_pretrained_round_trip_fp16(tmp_path):
    g = DEGANGenerator(DEGANConfig.from_dict({**TINY_MODEL, "scale": 2}))
    folder = g.save_pretrained(tmp_path / "m", extra={"note": "x"})
    assert json.loads((folder / "config.json").read_text())["note"] == "x"
    assert all(t.dtype == torch.float16 for t in load_file(str(folder / "model.safetensors")).values())
    loaded = DEGANGenerator.from_pretrained(folder)
    assert not loaded.training and loaded.name == "m"
    for (name, a), (_, b) in zip(g.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.allclose(a, b.float(), atol=1e-2, rtol=1e-3), name
    g.save_pretrained(folder)  # overwriting is atomic and leaves no stray folders
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_corrupt_and_mismatched_checkpoints(tmp_path):
    g = DEGANGenerator(DEGANConfig.from_dict({**TINY_MODEL, "scale": 2}))
    folder = g.save_pretrained(tmp_path / "m")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(RsgenError, match="cannot read weight file"):
        DEGANGenerator.from_pretrained(folder)
    save_file({"stem.0.weight": torch.zeros(2, 2)}, str(weights))
    with pytest.raises(RsgenError, match="do not fit"):
        DEGANGenerator.from_pretrained(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(RsgenError, match="corrupt model config"):
        DEGANGenerator.from_pretrained(folder)
    with pytest.raises(RsgenError, match="not a model folder"):
        DEGANGenerator.from_pretrained(tmp_path)


def test_training_state_round_trip_restores_adam(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    tensors, groups = optimizer_to_tensors(opt, "opt")
    save_training_state(tmp_path / "s.safetensors", tensors, {"groups": groups, "step": 7})
    loaded, meta = load_training_state(tmp_path / "s.safetensors")
    assert meta["step"] == 7
    fresh = torch.optim.Adam(model.parameters(), lr=0.1)
    optimizer_from_tensors(fresh, loaded, "opt", meta["groups"])
    for a, b in zip(opt.state.values(), fresh.state.values(), strict=True):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])


def test_model_folder_of_another_network_is_refused(tmp_path):
    from rsgen.models import DEGANDiscriminator, build_model

    critic = build_model({"name": "degan_discriminator", "base_channels": 4, "num_blocks": 2})
    folder = critic.save_pretrained(tmp_path / "d")
    assert isinstance(DEGANDiscriminator.from_pretrained(folder), DEGANDiscriminator)
    with pytest.raises(RsgenError, match="not a degan_generator model .*degan_discriminator"):
        DEGANGenerator.from_pretrained(folder)
    with pytest.raises(ValueError, match="unknown model name"):
        build_model({"name": "nope"})
