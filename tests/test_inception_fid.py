"""The FID Inception-v3 port: key layout of pytorch-fid's weight file, loading, shapes, bad files."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from rsgen.errors import RsgenError
from rsgen.models.inception_fid import InceptionV3FID

# Shapes in pytorch-fid's pt_inception-2015-12-05-6726825d.pth, written down independently of the module.
KNOWN_SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_1a_3x3.bn.running_var": (32,),
    "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_5d.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6e.branch7x7_1.conv.weight": (192, 768, 1, 1),
    "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
    "Mixed_7b.branch1x1.conv.weight": (320, 1280, 1, 1),
    "Mixed_7c.branch3x3dbl_1.conv.weight": (448, 2048, 1, 1),
    "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}
# torchvision's Inception3 has 27,161,264 parameters (1000 classes, with AuxLogits). Without the
# 3,326,696 AuxLogits parameters and with 1008 instead of 1000 classes (+8 * 2049):
NUM_PARAMETERS = 23_850_960
# ... plus BatchNorm running_mean and running_var: 2 * 17,216 channels over the 94 BasicConv2d.
NUM_STATE_VALUES = 23_885_392
NUM_TENSORS = 94 * 5 + 2  # conv.weight, bn.{weight,bias,running_mean,running_var} per conv; fc.{weight,bias}


def _file_state(net: InceptionV3FID) -> dict[str, torch.Tensor]:
    """The layout of the published file: no ``num_batches_tracked`` entries."""
    return {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


@pytest.fixture(scope="module")
def random_state() -> dict[str, torch.Tensor]:
    """A random full-size state dict with the real file's keys and shapes."""
    torch.manual_seed(0)
    state = {k: v.clone() for k, v in _file_state(InceptionV3FID()).items()}
    for key, value in state.items():
        if key.endswith("conv.weight"):
            # He init keeps the signal alive through 94 random layers; with the default init
            # every image collapses to the same features (equal to ~1e-7)
            torch.nn.init.kaiming_normal_(value, nonlinearity="relu")
        elif key.endswith("running_mean"):
            value.uniform_(-0.1, 0.1)
        elif key.endswith("running_var"):
            value.uniform_(0.5, 1.5)
        elif key.endswith("bn.weight"):
            value.uniform_(0.8, 1.2)
        elif key.endswith("bn.bias"):
            value.uniform_(-0.1, 0.2)
    return state


@pytest.fixture(scope="module")
def weight_files(random_state, tmp_path_factory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("inception")
    pth, safetensors = folder / "pt_inception-2015-12-05-6726825d.pth", folder / "inception.safetensors"
    torch.save(random_state, pth)
    save_file(random_state, str(safetensors))
    return {"pth": pth, "safetensors": safetensors}


@pytest.fixture(scope="module")
def net(weight_files) -> InceptionV3FID:
    return InceptionV3FID.from_file(weight_files["pth"])


def test_layout_matches_the_published_file(random_state):
    for key, shape in KNOWN_SHAPES.items():
        assert tuple(random_state[key].shape) == shape, key
    assert len(random_state) == NUM_TENSORS
    assert sum(v.numel() for v in random_state.values()) == NUM_STATE_VALUES
    assert sum(p.numel() for p in InceptionV3FID().parameters()) == NUM_PARAMETERS
    assert not any(k.startswith("AuxLogits") for k in random_state)


def test_loads_pth_frozen_and_returns_pool3_features_and_logits(net, random_state):
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training  # BatchNorm statistics never move
    assert torch.equal(net.fc.weight, random_state["fc.weight"])
    assert net.num_features == 2048 and net.name == "inception-v3"
    torch.manual_seed(1)
    images = torch.rand(2, 3, 64, 80) * 2 - 1
    with torch.no_grad():
        features, logits = net.features(images), net.logits(images)
        assert torch.equal(net(images), features)
    assert features.shape == (2, 2048) and logits.shape == (2, 1008)
    assert torch.isfinite(features).all() and torch.isfinite(logits).all()
    assert (features >= 0).all() and (features > 0).any()
    assert not torch.allclose(features[0], features[1])
    assert torch.allclose(logits, net.fc(features))


def test_resize_matches_pytorch_fid_convention(net):
    """pytorch-fid resizes [0, 1] images bilinearly to 299x299, then maps them to [-1, 1]."""
    torch.manual_seed(2)
    unit = torch.rand(1, 3, 40, 52)
    reference = 2 * F.interpolate(unit, size=(299, 299), mode="bilinear", align_corners=False) - 1
    with torch.no_grad():
        ours = net.features(unit * 2 - 1)
        direct = net.features(reference)  # already 299x299: passed through unchanged
    assert torch.allclose(ours, direct, rtol=1e-4, atol=1e-5)


def test_safetensors_loads_the_same_weights(weight_files, net):
    other = InceptionV3FID.from_file(weight_files["safetensors"])
    mine, theirs = net.state_dict(), other.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_num_batches_tracked_is_tolerated(random_state, tmp_path):
    state = dict(random_state)
    state["Conv2d_1a_3x3.bn.num_batches_tracked"] = torch.tensor(7)
    path = tmp_path / "with_counter.pth"
    torch.save(state, path)
    assert InceptionV3FID.from_file(path).Conv2d_1a_3x3.bn.num_batches_tracked.item() == 7


def _drop(state: dict) -> None:
    del state["fc.bias"]


def _aux(state: dict) -> None:
    state["AuxLogits.fc.weight"] = torch.zeros(1008, 768)


def _reshape(state: dict) -> None:
    state["fc.weight"] = torch.zeros(1000, 2048)


@pytest.mark.parametrize(
    "mutate, expected",
    [(_drop, "missing key fc.bias"), (_aux, "unexpected key AuxLogits.fc.weight"), (_reshape, "fc.weight")],
)
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_wrong_architecture(
    random_state, tmp_path, mutate: Callable[[dict], None], expected: str, suffix: str
) -> None:
    state = dict(random_state)
    mutate(state)
    path = tmp_path / f"wrong{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    _assert_rejected(path, expected)


def test_unreadable_files(tmp_path, weight_files):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    _assert_rejected(garbage, "cannot read")
    for name in ("empty.pth", "empty.safetensors"):
        (tmp_path / name).write_bytes(b"")
        _assert_rejected(tmp_path / name, "cannot read")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(weight_files["pth"].read_bytes()[:1_000_000])
    _assert_rejected(truncated, "cannot read")
    bad_safetensors = tmp_path / "bad.safetensors"
    bad_safetensors.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    _assert_rejected(bad_safetensors, "cannot read")
    not_a_dict = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), not_a_dict)
    _assert_rejected(not_a_dict, "not a state dict")
    _assert_rejected(tmp_path / "absent.pth", "not found")
    folder = tmp_path / "folder.pth"
    folder.mkdir()
    _assert_rejected(folder, "directory")


def test_bad_image_tensors(net):
    with pytest.raises(ValueError, match="shape"):
        net.features(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="float"):
        net.features(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def _assert_rejected(path, expected: str) -> None:
    with pytest.raises(RsgenError) as info:
        InceptionV3FID.from_file(path)
    message = str(info.value)
    assert path.name in message and expected in message, message
    assert "\n" not in message


def test_tf_pooling_quirks():
    """Average pools ignore the zero padding (TF); Mixed_7c max-pools its pool branch (FIDInceptionE_2)."""
    from rsgen.models.inception_fid import _avg_pool

    assert torch.equal(_avg_pool(torch.ones(1, 1, 4, 4)), torch.ones(1, 1, 4, 4))
    net = InceptionV3FID()
    assert net.Mixed_7b.pool == "avg" and net.Mixed_7c.pool == "max"
