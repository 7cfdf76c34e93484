import pytest
import torch

from rsgen.errors import RsgenError
from rsgen.models.feature_extractors import (
    EfficientNetLite0Features,
    VGG19Features,
    build_feature_extractor,
    vgg19_features,
)
from rsgen.train.losses import PerceptualLoss, charbonnier


def test_efficientnet_default_is_frozen_but_differentiable():
    net = build_feature_extractor("efficientnet-lite0")
    assert isinstance(net, EfficientNetLite0Features)
    assert not any(p.requires_grad for p in net.parameters())
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    loss = PerceptualLoss(net)(x * 2 - 1, torch.zeros(1, 3, 32, 32))
    loss.backward()
    assert loss.item() > 0 and x.grad.abs().sum() > 0
    net.train()
    assert not net.training  # BatchNorm statistics never move


def test_vgg19_loads_from_a_local_torchvision_layout_file(tmp_path):
    torch.manual_seed(0)
    features = vgg19_features()
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # a full torchvision file also has the classifier
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    net = build_feature_extractor("vgg19", path)
    assert isinstance(net, VGG19Features)
    out = net(torch.zeros(1, 3, 32, 32))
    assert len(out) == 1 and out[0].shape == (1, 512, 2, 2)
    assert torch.equal(net.features[0].weight, features[0].weight)


def test_bad_vgg_files(tmp_path):
    with pytest.raises(RsgenError, match="needs a local weight file"):
        build_feature_extractor("vgg19")
    with pytest.raises(RsgenError, match="not found"):
        build_feature_extractor("vgg19", tmp_path / "missing.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3)}, wrong)
    with pytest.raises(RsgenError, match="not a VGG19"):
        build_feature_extractor("vgg19", wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(RsgenError, match="cannot read"):
        build_feature_extractor("vgg19", garbage)
    with pytest.raises(RsgenError, match="unknown perceptual"):
        build_feature_extractor("resnet")


def test_charbonnier():
    assert charbonnier(torch.zeros(4), eps=1e-3).item() == pytest.approx(1e-3)
    assert charbonnier(torch.tensor([3.0, -3.0]), eps=0).item() == pytest.approx(3.0)
