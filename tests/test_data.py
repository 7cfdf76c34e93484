import numpy as np
import pytest
import torch
from PIL import Image

from rsgen.data.degradation import bicubic_downscale, crop_to_multiple
from rsgen.data.images import image_to_tensor, tensor_to_image
from rsgen.data.sr_dataset import SRPairSampler
from rsgen.errors import RsgenError
from tests.conftest import needs_shared


def test_pairs_are_bicubic_downscaled_crops(image_folder):
    sampler = SRPairSampler([image_folder], scale=2, hr_crop=16, augment=False, seed=3)
    lr, hr = sampler.batch(step=0, batch_size=4)
    assert lr.shape == (4, 3, 8, 8) and hr.shape == (4, 3, 16, 16)
    assert hr.min() >= -1 and hr.max() <= 1
    for i in range(4):
        expected = bicubic_downscale(Image.fromarray(tensor_to_image(hr[i])), 2)
        assert torch.allclose(lr[i], image_to_tensor(expected))


def test_batches_are_reproducible_per_step_and_differ_per_rank(image_folder):
    a = SRPairSampler([image_folder], 2, 16, seed=1, rank=0)
    b = SRPairSampler([image_folder], 2, 16, seed=1, rank=0)
    other_rank = SRPairSampler([image_folder], 2, 16, seed=1, rank=1)
    assert torch.equal(a.batch(5, 2)[1], b.batch(5, 2)[1])
    assert not torch.equal(a.batch(5, 2)[1], a.batch(6, 2)[1])
    assert not torch.equal(a.batch(5, 2)[1], other_rank.batch(5, 2)[1])


def test_uint8_round_trip():
    array = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(tensor_to_image(image_to_tensor(Image.fromarray(array))), array)


def test_dataset_errors(tmp_path, image_folder):
    with pytest.raises(RsgenError, match="no such file"):
        SRPairSampler([tmp_path / "missing"], 2, 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RsgenError, match="no images"):
        SRPairSampler([tmp_path / "empty"], 2, 16)
    with pytest.raises(RsgenError, match="divisible"):
        SRPairSampler([image_folder], 4, 18)
    with pytest.raises(RsgenError, match="smaller than hr_crop"):
        SRPairSampler([image_folder], 2, 64)


def test_crop_to_multiple():
    assert crop_to_multiple(Image.new("RGB", (10, 7)), 4).size == (8, 4)


def test_real_training_folders_load():
    rsscn7 = needs_shared("RSSCN7", "train")
    aid = needs_shared("AID-150")
    sampler = SRPairSampler([rsscn7, aid], scale=4, hr_crop=96, seed=0)
    assert len(sampler) == 280 + 150
    lr, hr = sampler.batch(0, 2)
    assert lr.shape == (2, 3, 24, 24) and hr.shape == (2, 3, 96, 96)
    # Real imagery is not flat: the HR crops carry texture for the model to learn.
    assert hr.std() > 0.05
