"""Large-scene editing: context windows, the RGB view of a window, writing the edit back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.enums import ColorInterp

from rsgen.errors import RsgenError
from rsgen.io import windows
from rsgen.io.windows import (
    PixelWindow,
    context_window,
    read_window_rgb,
    roi_mask,
    write_edited_scene,
)
from tests.test_io_raster import TRANSFORM, read_all, write_tif

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

RGBN = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.undefined]


def uint16_scene(tmp_path: Path, width: int = 300, height: int = 200) -> tuple[Path, np.ndarray]:
    """A 4-band (R, G, B, NIR) uint16 GeoTIFF with CRS, transform, nodata 0 and nodata pixels."""
    rng = np.random.default_rng(0)
    data = rng.integers(200, 4000, (4, height, width), dtype=np.uint16)
    data[:, 90:95, 100:110] = 0  # a nodata hole inside the ROI used below
    data[3, 10:20, 10:20] = 0
    path = write_tif(tmp_path / "scene.tif", data, RGBN, crs="EPSG:32633", transform=TRANSFORM, nodata=0)
    with rasterio.open(path, "r+") as ds:
        for b, text in enumerate(["red", "green", "blue", "nir"], start=1):
            ds.set_band_description(b, text)
    return path, data


def uint8_scene(tmp_path: Path, width: int = 300, height: int = 200) -> tuple[Path, np.ndarray]:
    data = np.random.default_rng(1).integers(1, 256, (3, height, width), dtype=np.uint8)
    return write_tif(tmp_path / "rgb.tif", data, crs="EPSG:4326", transform=TRANSFORM, nodata=0), data


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".")]


def edit_everything(rgb: np.ndarray) -> np.ndarray:
    return np.full(rgb.shape[:2], True)


# --------------------------------------------------------------------------- context_window


def test_context_window_adds_the_margin_inside_the_scene() -> None:
    assert context_window((100, 80, 50, 40), 500, 400, margin=16, max_side=1024) == (84, 64, 82, 72)


def test_context_window_is_clipped_at_the_borders() -> None:
    assert context_window((5, 0, 20, 10), 500, 400, margin=16) == (0, 0, 41, 26)
    assert context_window((480, 390, 20, 10), 500, 400, margin=16) == (464, 374, 36, 26)
    assert context_window((0, 0, 500, 400), 500, 400, margin=16) == (0, 0, 500, 400)


def test_context_window_trims_the_margin_to_max_side() -> None:
    # 100 px of ROI, 2 x 64 px margin, at most 160: 30 px of margin on each side.
    assert context_window((200, 200, 100, 100), 500, 400, margin=64, max_side=160) == (170, 170, 160, 160)
    # At a border the other side gets what the border took.
    assert context_window((10, 200, 100, 100), 500, 400, margin=64, max_side=160) == (0, 170, 160, 160)
    assert context_window((200, 290, 100, 100), 500, 400, margin=64, max_side=160) == (170, 240, 160, 160)


def test_context_window_refuses_an_roi_too_big() -> None:
    with pytest.raises(RsgenError, match=r"ROI 0,0,300,20 is 300x20 px, too big to edit: at most 256"):
        context_window((0, 0, 300, 20), 500, 400, margin=8, max_side=256)
    assert context_window((0, 0, 256, 20), 500, 400, margin=8, max_side=256) == (0, 0, 256, 28)


@pytest.mark.parametrize(
    ("roi", "message"),
    [
        ((10, 10, 0, 5), "ROI 10,10,0,5 is empty"),
        ((10, 10, 5, -2), "ROI 10,10,5,-2 is empty"),
        ((600, 10, 20, 5), "ROI 600,10,20,5 lies outside the 500x400 image"),
        ((-30, 10, 20, 5), "ROI -30,10,20,5 lies outside the 500x400 image"),
        ((490, 10, 20, 5), "ROI 490,10,20,5 extends beyond the 500x400 image"),
        ((10, -1, 20, 5), "ROI 10,-1,20,5 extends beyond the 500x400 image"),
        ((10, 10, 5), "ROI must be 4 integers x, y, width, height"),
        ((10, 10, 5.5, 5), "ROI must be 4 integers x, y, width, height"),
    ],
)
def test_context_window_validates_the_roi(roi: tuple, message: str) -> None:
    with pytest.raises(RsgenError) as err:
        context_window(roi, 500, 400)
    assert str(err.value).startswith(message)


def test_context_window_errors_name_the_file_and_bad_options() -> None:
    with pytest.raises(RsgenError, match=r"^scene\.tif: ROI 10,10,0,5 is empty$"):
        context_window((10, 10, 0, 5), 500, 400, path="scene.tif")
    with pytest.raises(RsgenError, match="margin must be 0 or more"):
        context_window((10, 10, 5, 5), 500, 400, margin=-1)
    with pytest.raises(RsgenError, match="max_side must be at least 1"):
        context_window((10, 10, 5, 5), 500, 400, max_side=0)


def test_roi_mask_marks_the_roi_and_its_blend_band_within_the_window() -> None:
    window = PixelWindow(0, 0, 20, 10)
    mask = roi_mask(window, (5, 2, 4, 3))
    assert mask.shape == (10, 20) and mask.sum() == 12 and mask[2:5, 5:9].all()
    grown = roi_mask(window, (5, 2, 4, 3), grow=3)
    assert grown.sum() == 8 * 10  # rows 0..7 (clipped at the top), cols 2..11
    assert grown[0:8, 2:12].all() and not grown[8:].any()
    assert roi_mask((30, 30, 10, 10), (32, 33, 2, 2)).sum() == 4


# --------------------------------------------------------------------------- read_window_rgb


def test_read_window_rgb_of_uint8_is_the_bands_as_is(tmp_path: Path) -> None:
    path, data = uint8_scene(tmp_path)
    rgb, context = read_window_rgb(path, (250, 150, 50, 50))
    assert rgb.shape == (50, 50, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, np.moveaxis(data[:, 150:200, 250:300], 0, -1))
    assert context.normalizer is None and context.bands == (0, 1, 2)
    assert context.raw.shape == (3, 50, 50) and context.window == (250, 150, 50, 50)
    rgb[:] = 0  # the editor's copy: the context keeps what was read
    assert context.rgb.any()


def test_read_window_rgb_of_uint16_stretches_and_marks_nodata(tmp_path: Path) -> None:
    path, data = uint16_scene(tmp_path)
    rgb, context = read_window_rgb(path, (80, 70, 60, 40))
    assert rgb.shape == (40, 60, 3) and rgb.dtype == np.uint8
    assert context.normalizer is not None and context.bands == (0, 1, 2)
    assert context.raw.shape == (4, 40, 60) and context.raw.dtype == np.uint16
    assert context.nodata_mask.sum() == 5 * 10 and context.nodata_mask[20:25, 20:30].all()
    assert rgb.min() < 10 and rgb.max() > 245  # stretched over the range


@pytest.mark.parametrize(
    ("window", "message"),
    [((290, 10, 20, 5), "window 290,10,20,5 extends beyond the 300x200 image"), ((0, 0, 0, 4), "is empty")],
)
def test_read_window_rgb_validates_the_window(tmp_path: Path, window: tuple, message: str) -> None:
    path, _ = uint8_scene(tmp_path)
    with pytest.raises(RsgenError, match=message) as err:
        read_window_rgb(path, window)
    assert str(path) in str(err.value)


def test_read_window_rgb_refuses_bands_without_an_rgb_view(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "four.tif", np.ones((4, 8, 8), np.uint16))
    with pytest.raises(RsgenError, match="4 data bands without declared red/green/blue"):
        read_window_rgb(path, (0, 0, 4, 4))


# --------------------------------------------------------------------------- write_edited_scene


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stream in 48-row blocks, so a window spans several blocks of a 200-row scene."""
    monkeypatch.setattr(windows, "ROW_BLOCK", 48)


def test_identity_edit_of_a_uint16_scene_is_bit_identical(tmp_path: Path, small_blocks: None) -> None:
    path, data = uint16_scene(tmp_path)
    window = context_window((100, 80, 40, 30), 300, 200, margin=16)
    rgb, context = read_window_rgb(path, window)
    info = write_edited_scene(path, tmp_path / "out.tif", context, rgb, edit_everything(rgb))
    np.testing.assert_array_equal(read_all(tmp_path / "out.tif"), data)
    assert (info.width, info.height, info.count, info.dtype) == (300, 200, 4, "uint16")


def test_painting_the_roi_changes_only_roi_pixels(tmp_path: Path, small_blocks: None) -> None:
    path, data = uint16_scene(tmp_path)
    roi = (100, 80, 40, 30)
    window = context_window(roi, 300, 200, margin=16)
    rgb, context = read_window_rgb(path, window)
    mask = roi_mask(window, roi)
    edited = rgb.copy()
    edited[mask] = (200, 30, 90)
    edited[~mask] = 0  # ignored: outside the changed mask
    write_edited_scene(path, tmp_path / "out.tif", context, edited, mask)
    out = read_all(tmp_path / "out.tif")

    in_roi = np.zeros((200, 300), bool)
    in_roi[80:110, 100:140] = True
    for b in range(4):  # every band, including the NIR band, is untouched outside the ROI
        np.testing.assert_array_equal(out[b][~in_roi], data[b][~in_roi])
    np.testing.assert_array_equal(out[3], data[3])
    hole = np.zeros_like(in_roi)
    hole[90:95, 100:110] = True
    assert (out[:, hole] == 0).all()  # nodata stays nodata
    painted = in_roi & ~hole
    shown = np.zeros((3, 200, 300), np.int16)  # the 8-bit view the editor saw, in scene pixels
    shown[:, window.y : window.y + window.height, window.x : window.x + window.width] = np.moveaxis(
        context.rgb, -1, 0
    )
    norm = context.normalizer
    for c, value in enumerate((200, 30, 90)):
        kept = painted & (shown[c] == value)  # the edit did not change these 8-bit values
        np.testing.assert_array_equal(out[c][kept], data[c][kept])
        new = out[c][painted & ~kept]
        assert new.size > 1000 and len(np.unique(new)) == 1
        assert abs((float(new[0]) - norm.lo[c]) / (norm.hi[c] - norm.lo[c]) * 255 - value) <= 0.51


def test_georeferencing_and_band_metadata_are_kept(tmp_path: Path) -> None:
    path, _ = uint16_scene(tmp_path)
    rgb, context = read_window_rgb(path, (0, 0, 30, 30))
    edited = np.full_like(rgb, 128)
    write_edited_scene(path, tmp_path / "out.tif", context, edited, edit_everything(rgb))
    with rasterio.open(path) as src, rasterio.open(tmp_path / "out.tif") as out:
        assert out.crs == src.crs and out.crs.to_epsg() == 32633
        assert out.transform == src.transform == TRANSFORM
        assert out.nodata == src.nodata == 0
        assert out.dtypes == src.dtypes and out.count == 4
        assert out.descriptions == ("red", "green", "blue", "nir")
        assert out.colorinterp == src.colorinterp
        assert out.colorinterp[:3] == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)


def test_painting_a_uint8_geotiff_writes_the_values_as_they_are(tmp_path: Path) -> None:
    path, data = uint8_scene(tmp_path)
    roi = (280, 190, 20, 10)  # at the bottom-right corner
    window = context_window(roi, 300, 200, margin=8)
    assert window == (272, 182, 28, 18)
    rgb, context = read_window_rgb(path, window)
    mask = roi_mask(window, roi)
    edited = rgb.copy()
    edited[mask] = (7, 0, 250)  # 0 is the nodata value: nudged to 1
    write_edited_scene(path, tmp_path / "out.tif", context, edited, mask)
    out = read_all(tmp_path / "out.tif")
    expected = data.copy()
    expected[:, 190:200, 280:300] = np.array([7, 1, 250], np.uint8)[:, None, None]
    np.testing.assert_array_equal(out, expected)


def test_blend_band_keeps_unchanged_values_exactly(tmp_path: Path) -> None:
    path, data = uint16_scene(tmp_path)
    window = (150, 20, 40, 40)
    rgb, context = read_window_rgb(path, window)
    edited = rgb.copy()
    edited[10:30, 10:30, 1] = 255 - edited[10:30, 10:30, 1]  # only green changes
    write_edited_scene(path, tmp_path / "out.tif", context, edited, edit_everything(rgb))
    out = read_all(tmp_path / "out.tif")
    changed = out != data
    assert not changed[[0, 2, 3]].any()  # red and blue kept their 16-bit values
    inside = np.zeros((200, 300), bool)
    inside[30:50, 160:180] = True
    assert changed[1][inside].mean() > 0.9 and not changed[1][~inside].any()


def test_gray_band_gets_the_mean_of_the_edited_channels(tmp_path: Path) -> None:
    data = np.random.default_rng(2).integers(0, 256, (1, 40, 50), dtype=np.uint8)
    path = write_tif(tmp_path / "gray.tif", data)
    rgb, context = read_window_rgb(path, (10, 10, 20, 20))
    assert context.bands == (0, 0, 0)
    edited = rgb.copy()
    edited[:5, :5] = (10, 20, 33)
    write_edited_scene(path, tmp_path / "out.tif", context, edited, edit_everything(rgb))
    expected = data.copy()
    expected[0, 10:15, 10:15] = 21
    np.testing.assert_array_equal(read_all(tmp_path / "out.tif"), expected)


def test_float_scene_round_trips_and_keeps_nan(tmp_path: Path) -> None:
    data = np.random.default_rng(3).normal(0.2, 0.05, (3, 60, 70)).astype(np.float32)
    data[:, 5:8, 5:8] = np.nan
    path = write_tif(tmp_path / "refl.tif", data, crs="EPSG:32633", transform=TRANSFORM)
    rgb, context = read_window_rgb(path, (0, 0, 30, 30))
    write_edited_scene(path, tmp_path / "same.tif", context, rgb, edit_everything(rgb))
    assert read_all(tmp_path / "same.tif").tobytes() == data.tobytes()
    edited = np.full_like(rgb, 100)
    write_edited_scene(path, tmp_path / "out.tif", context, edited, edit_everything(rgb))
    out = read_all(tmp_path / "out.tif")
    assert np.isnan(out[:, 5:8, 5:8]).all()
    assert (
        out[:, 30:].tobytes() == data[:, 30:].tobytes()
        and out[:, :, 30:].tobytes() == data[:, :, 30:].tobytes()
    )


def test_png_scene_round_trips_and_paints(tmp_path: Path) -> None:
    data = np.random.default_rng(4).integers(0, 256, (120, 90, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(data).save(path)
    roi = (30, 40, 20, 20)
    window = context_window(roi, 90, 120, margin=10)
    rgb, context = read_window_rgb(path, window)
    write_edited_scene(path, tmp_path / "same.png", context, rgb, edit_everything(rgb))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "same.png")), data)

    mask = roi_mask(window, roi)
    edited = rgb.copy()
    edited[mask] = (1, 2, 3)
    write_edited_scene(path, tmp_path / "out.png", context, edited, mask)
    expected = data.copy()
    expected[40:60, 30:50] = (1, 2, 3)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")), expected)


def test_jpeg_scene_is_exact_as_png_and_recompressed_as_jpeg(tmp_path: Path) -> None:
    data = np.random.default_rng(5).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    path = tmp_path / "drone.jpg"
    Image.fromarray(data).save(path, quality=90)
    decoded = np.asarray(Image.open(path))
    rgb, context = read_window_rgb(path, (8, 8, 16, 16))
    edited = rgb.copy()
    edited[:] = 255
    write_edited_scene(path, tmp_path / "out.png", context, edited, edit_everything(rgb))
    expected = decoded.copy()
    expected[8:24, 8:24] = 255
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.png")), expected)
    info = write_edited_scene(path, tmp_path / "out.jpg", context, edited, edit_everything(rgb))
    assert (info.width, info.height, info.count) == (80, 64, 3)


def test_missing_destination_folders_are_created_like_every_rsgen_output(tmp_path: Path) -> None:
    path, data = uint8_scene(tmp_path)
    rgb, context = read_window_rgb(path, (0, 0, 10, 10))
    dst = tmp_path / "new" / "folder" / "out.tif"
    write_edited_scene(path, dst, context, rgb, edit_everything(rgb))
    np.testing.assert_array_equal(read_all(dst), data)
    assert temp_files(dst.parent) == []


def test_the_scene_is_streamed_in_row_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, data = uint16_scene(tmp_path, width=64, height=600)
    rgb, context = read_window_rgb(path, (0, 250, 64, 20))
    heights: list[int] = []
    real_open = windows.open_raster

    def spying_open(*args, **kwargs):
        source = real_open(*args, **kwargs)
        real_read = source.read

        def read(window):
            heights.append(window.height)
            return real_read(window)

        source.read = read
        return source

    monkeypatch.setattr(windows, "open_raster", spying_open)
    write_edited_scene(path, tmp_path / "out.tif", context, np.zeros_like(rgb), edit_everything(rgb))
    assert heights == [256, 256, 88]
    out = read_all(tmp_path / "out.tif")
    np.testing.assert_array_equal(out[:, :250], data[:, :250])
    np.testing.assert_array_equal(out[:, 270:], data[:, 270:])


# --------------------------------------------------------------------------- failures leave nothing behind


def test_unwritable_destination_leaves_nothing(tmp_path: Path) -> None:
    path, _ = uint8_scene(tmp_path)
    rgb, context = read_window_rgb(path, (0, 0, 10, 10))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the destination folder should be")
    with pytest.raises(RsgenError, match="cannot write output") as err:
        write_edited_scene(path, blocker / "out.tif", context, rgb, edit_everything(rgb))
    assert str(blocker / "out.tif") in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-folder", "rgb.tif"]


def test_a_source_changed_since_reading_fails_midway_and_leaves_nothing(
    tmp_path: Path, small_blocks: None
) -> None:
    path, data = uint8_scene(tmp_path)
    rgb, context = read_window_rgb(path, (100, 150, 20, 20))  # rows past the first blocks
    data[:, 160, 110] += 1
    write_tif(path, data, crs="EPSG:4326", transform=TRANSFORM, nodata=0)
    dst = tmp_path / "out.tif"
    dst.write_bytes(b"previous version")
    with pytest.raises(RsgenError, match=r"window 100,150,20,20 differ from those the edit was made on"):
        write_edited_scene(path, dst, context, rgb, edit_everything(rgb))
    assert dst.read_bytes() == b"previous version"
    assert temp_files(tmp_path) == []


def test_a_layout_the_format_cannot_hold_is_refused_before_writing(tmp_path: Path) -> None:
    path, _ = uint16_scene(tmp_path)
    rgb, context = read_window_rgb(path, (0, 0, 10, 10))
    with pytest.raises(RsgenError, match="cannot save 4-band uint16 data as PNG"):
        write_edited_scene(path, tmp_path / "out.png", context, rgb, edit_everything(rgb))
    assert not (tmp_path / "out.png").exists() and temp_files(tmp_path) == []


def test_the_input_is_never_overwritten_and_must_match_the_context(tmp_path: Path) -> None:
    path, data = uint8_scene(tmp_path)
    rgb, context = read_window_rgb(path, (0, 0, 10, 10))
    with pytest.raises(RsgenError, match="output would overwrite the input"):
        write_edited_scene(path, path, context, rgb, edit_everything(rgb))
    np.testing.assert_array_equal(read_all(path), data)
    other = write_tif(tmp_path / "other.tif", data[:, :100])
    with pytest.raises(RsgenError, match="is a 300x100 3-band uint8 raster, but the window was read"):
        write_edited_scene(other, tmp_path / "out.tif", context, rgb, edit_everything(rgb))
    assert not (tmp_path / "out.tif").exists()


def test_arrays_of_the_wrong_shape_are_refused(tmp_path: Path) -> None:
    path, _ = uint8_scene(tmp_path)
    rgb, context = read_window_rgb(path, (0, 0, 10, 10))
    with pytest.raises(ValueError, match=r"edited_rgb must be a \(10, 10, 3\) uint8"):
        write_edited_scene(path, tmp_path / "out.tif", context, rgb[:5], edit_everything(rgb))
    with pytest.raises(ValueError, match=r"changed_mask must be a \(10, 10\) bool"):
        write_edited_scene(path, tmp_path / "out.tif", context, rgb, np.ones((10, 10), np.uint8))
    assert not (tmp_path / "out.tif").exists()
