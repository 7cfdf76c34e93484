"""The shipped DEGAN weights: they load offline, beat bicubic on real imagery, tile seamlessly."""

import numpy as np
import pytest
import torch
from PIL import Image

from rsgen.data.degradation import bicubic_downscale
from rsgen.io import list_images, read_rgb_uint8
from rsgen.metrics import evaluate_sr
from rsgen.pipelines import SuperResolver
from rsgen.shipped import available_models
from tests.conftest import needs_shared


@pytest.mark.parametrize("scale", [2, 4])
def test_shipped_model_is_fp16_and_loads_offline(scale):
    assert f"degan-x{scale}" in available_models()
    sr = SuperResolver.from_pretrained(f"degan-x{scale}", scale=scale)
    assert sr.scale == scale and next(sr.generator.parameters()).dtype == torch.float32


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
