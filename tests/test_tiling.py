"""Tiled inference: geometry, seam-free blending, model errors, atomic output, memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from PIL import Image

from rsgen.errors import RsgenError
from rsgen.io import TileError, tiled_upscale, upscale_array, upscale_raster
from rsgen.io import write as write_module
from rsgen.io.tiling import TileGrid, feather_ramp, tile_size, tile_starts

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def nearest(scale: int):
    return lambda x: F.interpolate(x, scale_factor=scale, mode="nearest")


def bicubic(scale: int):
    return lambda x: F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


def conv_net(scale: int) -> torch.nn.Module:
    """Random conv net, receptive field radius 2 LR px, pixel-shuffle upsampling."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 3 * scale * scale, 3, padding=1),
        torch.nn.PixelShuffle(scale),
        torch.nn.Sigmoid(),
    ).eval()


def write_rgb_tif(path: Path, array: np.ndarray) -> Path:
    count, height, width = array.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=count, dtype=array.dtype.name
    ) as ds:
        ds.write(array)
    return path


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("length", [1, 5, 32, 33, 57, 100, 129])
@pytest.mark.parametrize(("tile", "overlap"), [(32, 8), (16, 0), (8, 4)])
def test_tile_starts_cover_evenly_with_min_overlap(length: int, tile: int, overlap: int) -> None:
    starts = tile_starts(length, tile, overlap)
    size = tile_size(length, tile, overlap)
    assert size <= min(tile, length)
    assert starts[0] == 0
    assert starts[-1] + size == length
    gaps = np.diff(starts)
    assert np.all(gaps > 0)
    assert np.all(gaps <= size - overlap)  # neighbours overlap by >= overlap px


@pytest.mark.parametrize(
    ("side", "tile", "overlap", "tiles", "share"),
    [(512, 64, 16, 11, 0.436), (512, 64, 4, 9, 0.130), (512, 128, 16, 5, 0.221), (64, 64, 16, 1, 0.0)],
)
def test_tiles_shrink_so_the_recomputed_overlap_stays_near_the_requested_one(
    side, tile, overlap, tiles, share
):
    grid = TileGrid.build(side, side, tile, overlap)
    assert len(grid.xs) == tiles and grid.recomputed_share == pytest.approx(share, abs=1e-3)
    if tiles > 1:  # neighbours overlap by the requested amount or one pixel more, not by most of a tile
        assert max(grid.tile_w - gap for gap in np.diff(grid.xs)) <= overlap + 1


def test_grid_clamps_overlap_and_small_images_are_one_tile() -> None:
    grid = TileGrid.build(width=10, height=5, tile=8, overlap=100)
    assert grid.overlap == 4
    assert (grid.tile_w, grid.tile_h) == (7, 5)  # two 7 px tiles overlapping by 4 cover 10 px
    assert grid.ys == (0,)
    assert TileGrid.build(3, 3, 128, 16).n_tiles == 1


def test_feather_ramps_of_neighbours_sum_to_one() -> None:
    size, overlap = 40, 16
    left = feather_ramp(size, overlap, lead=False, trail=True)
    right = feather_ramp(size, overlap, lead=True, trail=False)
    np.testing.assert_allclose(left[-overlap:] + right[:overlap], 1.0, atol=1e-6)
    assert left[0] == 1.0 and right[-1] == 1.0
    assert left[-1] == 0.0 and right[0] == 0.0  # tile borders get no weight


def test_feather_weights_cover_every_pixel() -> None:
    """Blending divides by the weight sum, so every output pixel needs a positive weight."""
    for length in range(1, 70):
        for tile in (1, 2, 5, 8, 13, 32):
            for overlap in range(0, tile + 2):
                for scale in (1, 3):
                    grid = TileGrid.build(length, 1, tile, overlap)
                    total = np.zeros(length * scale)
                    for x0 in grid.xs:
                        ramp = feather_ramp(
                            grid.tile_w * scale, grid.overlap * scale, x0 > 0, x0 + grid.tile_w < length
                        )
                        total[x0 * scale : (x0 + grid.tile_w) * scale] += ramp
                    assert total.min() > 0, (length, tile, overlap, scale)


# --------------------------------------------------------------------------- tiled == whole


@pytest.mark.parametrize(
    ("tile", "overlap", "batch_size"), [(32, 8, 4), (24, 8, 1), (40, 12, 3), (256, 16, 4), (16, 100, 2)]
)
def test_tiled_conv_net_equals_whole_image(tile: int, overlap: int, batch_size: int) -> None:
    net = conv_net(2)
    image = torch.rand(3, 57, 70, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        whole = net(image[None])[0]
    tiled = tiled_upscale(image, net, 2, tile=tile, overlap=overlap, batch_size=batch_size)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max().item() < 1e-5


def test_tiled_bicubic_equals_whole_image() -> None:
    image = torch.rand(3, 45, 38, generator=torch.Generator().manual_seed(2))
    whole = bicubic(4)(image[None])[0]
    tiled = tiled_upscale(image, bicubic(4), 4, tile=16, overlap=8)
    assert (tiled - whole).abs().max().item() < 1e-5


def test_upscale_array_uint8_matches_whole_image() -> None:
    rgb = np.random.default_rng(4).integers(0, 256, (30, 26, 3), dtype=np.uint8)
    net = conv_net(2)
    out = upscale_array(rgb, net, 2, tile=16, overlap=8, batch_size=2)
    with torch.inference_mode():
        whole = net(torch.from_numpy(rgb).permute(2, 0, 1).float()[None] / 255)[0]
    expected = (whole.clamp(0, 1) * 255).round().permute(1, 2, 0).numpy().astype(int)
    assert out.dtype == np.uint8 and out.shape == (60, 52, 3)
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_without_overlap_conv_net_shows_seams() -> None:
    """Sanity check of the test above: with no overlap the tiles do disagree."""
    net = conv_net(2)
    image = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        whole = net(image[None])[0]
    assert (tiled_upscale(image, net, 2, tile=16, overlap=0) - whole).abs().max().item() > 1e-3


def test_upscale_raster_matches_one_whole_image_call(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (3, 50, 61), dtype=np.uint8)
    src = write_rgb_tif(tmp_path / "in.tif", lr)
    net = conv_net(2)
    info = upscale_raster(src, tmp_path / "out.tif", net, 2, tile=24, overlap=8, batch_size=3, progress=False)
    with rasterio.open(info.path) as ds:
        tiled = ds.read().astype(int)
    with torch.inference_mode():
        whole = net(torch.from_numpy(lr).float()[None] / 255)[0].numpy()
    expected = np.clip(np.rint(whole * 255), 0, 255).astype(int)
    assert tiled.shape == (3, 100, 122)
    assert np.abs(tiled - expected).max() <= 1


def test_batches_never_exceed_batch_size(tmp_path: Path) -> None:
    src = write_rgb_tif(tmp_path / "in.tif", np.zeros((3, 40, 40), np.uint8))
    sizes: list[int] = []

    def model(x: torch.Tensor) -> torch.Tensor:
        sizes.append(x.shape[0])
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 16, 16)
        return nearest(2)(x)

    upscale_raster(src, tmp_path / "out.tif", model, 2, tile=16, overlap=4, batch_size=2, progress=False)
    assert max(sizes) == 2
    assert sum(sizes) == TileGrid.build(40, 40, 16, 4).n_tiles


def test_progress_bar_goes_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_rgb_tif(tmp_path / "in.tif", np.zeros((3, 8, 8), np.uint8))
    upscale_raster(src, tmp_path / "out.tif", nearest(2), 2, tile=4, overlap=2, progress=True)
    captured = capsys.readouterr()
    assert "tile" in captured.err and captured.out == ""


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_model_error_names_file_and_tile_and_leaves_no_output(tmp_path: Path, suffix: str) -> None:
    src = write_rgb_tif(tmp_path / "in.tif", np.zeros((3, 40, 40), np.uint8))
    calls = {"n": 0}

    def flaky(x: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return nearest(2)(x)

    with pytest.raises(TileError) as err:
        upscale_raster(src, tmp_path / f"out{suffix}", flaky, 2, tile=16, overlap=4, batch_size=1)
    message = str(err.value)
    assert str(src) in message and "boom" in message and "rows 0:16" in message and "cols" in message
    assert isinstance(err.value, RsgenError) and isinstance(err.value.__cause__, RuntimeError)
    assert files_in(tmp_path) == ["in.tif"]  # neither output nor temporary file


def test_failed_run_keeps_previous_output_intact(tmp_path: Path) -> None:
    src = write_rgb_tif(tmp_path / "in.tif", np.zeros((3, 20, 20), np.uint8))
    dst = tmp_path / "out.png"
    dst.write_bytes(b"previous result")

    def broken(x: torch.Tensor) -> torch.Tensor:
        raise ValueError("nope")

    with pytest.raises(TileError):
        upscale_raster(src, dst, broken, 2, tile=8, progress=False)
    assert dst.read_bytes() == b"previous result"
    assert files_in(tmp_path) == ["in.tif", "out.png"]


def test_wrong_model_scale_is_reported(tmp_path: Path) -> None:
    src = write_rgb_tif(tmp_path / "in.tif", np.zeros((3, 20, 20), np.uint8))
    with pytest.raises(TileError, match=r"expected \(1, 3, 40, 40\).*scale=2"):
        upscale_raster(src, tmp_path / "out.tif", nearest(4), 2, tile=20, batch_size=1, progress=False)
    assert files_in(tmp_path) == ["in.tif"]


def test_non_finite_model_output_is_reported(tmp_path: Path) -> None:
    src = write_rgb_tif(tmp_path / "in.tif", np.zeros((3, 20, 20), np.uint8))
    with pytest.raises(TileError, match="NaN"):
        upscale_raster(src, tmp_path / "out.tif", lambda x: nearest(2)(x) / 0, 2, progress=False)


@pytest.mark.parametrize("options", [{"tile": 0}, {"overlap": -1}, {"batch_size": 0}, {"scale": 0}])
def test_invalid_options_raise_rsgen_error(tmp_path: Path, options: dict[str, int]) -> None:
    src = write_rgb_tif(tmp_path / "in.tif", np.zeros((3, 8, 8), np.uint8))
    kwargs = {"scale": 2, **options}
    with pytest.raises(RsgenError, match=next(iter(options))):
        upscale_raster(src, tmp_path / "out.tif", nearest(2), progress=False, **kwargs)


def test_output_cannot_overwrite_input(tmp_path: Path) -> None:
    src = write_rgb_tif(tmp_path / "in.tif", np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(RsgenError, match="overwrite the input"):
        upscale_raster(src, src, nearest(2), 2, progress=False)


# --------------------------------------------------------------------------- memory model


def _peak_numpy_memory(tmp_path: Path, height: int, scale: int = 4, width: int = 64) -> tuple[int, Path]:
    rows = (np.arange(height) % 256).astype(np.uint8)[None, :, None]
    src = write_rgb_tif(tmp_path / f"tall{height}.tif", np.broadcast_to(rows, (3, height, width)).copy())
    tracemalloc.start()
    try:
        info = upscale_raster(
            src, tmp_path / f"out{height}.tif", nearest(scale), scale, tile=32, overlap=8, progress=False
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, info.path


def test_geotiff_output_is_written_in_stripes_with_bounded_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Peak (numpy) memory does not grow with the scene height and stays far below the scene."""
    writes: list[int] = []
    original = write_module._GeoTiffWriter.write_rows

    def spy(self: write_module._GeoTiffWriter, block: np.ndarray) -> None:
        writes.append(block.shape[1])
        original(self, block)

    monkeypatch.setattr(write_module._GeoTiffWriter, "write_rows", spy)
    small_peak, _ = _peak_numpy_memory(tmp_path, height=384)
    writes.clear()
    peak, out = _peak_numpy_memory(tmp_path, height=4096)
    full_output_bytes = 3 * 4096 * 4 * 64 * 4  # the uint8 output scene: 12.6 MB
    assert peak < full_output_bytes / 4, f"peak {peak / 1e6:.2f} MB"
    assert peak < small_peak * 1.25 + 65536, f"peak grew from {small_peak} to {peak} bytes"
    assert len(writes) > 100 and max(writes) <= 32 * 4 and sum(writes) == 4096 * 4
    with rasterio.open(out) as ds:
        assert ds.block_shapes[0] == (256, 256)
        assert np.array_equal(
            ds.read(1, window=((4000, 4004), (0, 4))), np.full((4, 4), 1000 % 256, np.uint8)
        )


def test_png_output_is_assembled(tmp_path: Path) -> None:
    src = write_rgb_tif(tmp_path / "in.tif", np.full((3, 9, 7), 200, np.uint8))
    info = upscale_raster(src, tmp_path / "out.PNG", nearest(3), 3, tile=4, overlap=1, progress=False)
    with Image.open(info.path) as image:
        assert image.mode == "RGB" and image.size == (21, 27)
        assert np.all(np.asarray(image) == 200)
