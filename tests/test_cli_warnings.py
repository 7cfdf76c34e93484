"""Library warnings stay off stderr; rsgen's own warnings are one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.transform import Affine

from tests.conftest import run_cli_process, textured_image


def test_plain_images_write_without_library_warnings_and_georeferenced_loss_is_one_line(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "plain.png"
    Image.fromarray(textured_image((16, 16))).save(plain)
    result = run_cli_process(
        "sr", plain, "-o", tmp_path / "plain_x2.tif", "--model", tiny_model_dir, "--scale", "2", "-q"
    )
    assert result.code == 0 and "Warning" not in result.stderr and len(result.stderr.splitlines()) == 1

    geo = tmp_path / "geo.tif"
    data = np.random.default_rng(0).integers(0, 255, (3, 16, 16), dtype=np.uint8)
    with rasterio.open(
        geo,
        "w",
        driver="GTiff",
        width=16,
        height=16,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=Affine(10, 0, 5e5, 0, -10, 4e6),
    ) as ds:
        ds.write(data)
    result = run_cli_process(
        "sr", geo, "-o", tmp_path / "geo_x2.png", "--model", tiny_model_dir, "--scale", "2", "-q"
    )
    lines = result.stderr.splitlines()
    assert result.code == 0 and lines[0].startswith("warning: ") and "no georeferencing" in lines[0]
    assert len(lines) == 2  # the warning and the one-line summary
