"""Raster I/O: validation errors, georeferencing, data types, band layouts, helpers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile
from rasterio.enums import ColorInterp
from rasterio.transform import Affine

from rsgen.errors import RsgenError
from rsgen.io import (
    list_images,
    read_raster_info,
    read_rgb_uint8,
    upscale_raster,
    write_rgb_uint8,
)

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

TRANSFORM = Affine.translation(500000.0, 4000000.0) @ Affine.scale(10.0, -10.0)


def nearest(scale: int):
    return lambda x: F.interpolate(x, scale_factor=scale, mode="nearest")


def write_tif(path: Path, array: np.ndarray, roles: list[ColorInterp] | None = None, **profile) -> Path:
    count, height, width = array.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=count, dtype=array.dtype.name, **profile
    ) as ds:
        ds.write(array)
        if roles:
            ds.colorinterp = roles
    return path


def read_all(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def random_uint8(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def upsampled(array: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(array, scale, axis=-2), scale, axis=-1)


# --------------------------------------------------------------------------- validation errors


def test_read_raster_info_of_a_geotiff(tmp_path: Path) -> None:
    src = write_tif(
        tmp_path / "a.tif", random_uint8(3, 6, 7), crs="EPSG:32633", transform=TRANSFORM, nodata=0
    )
    info = read_raster_info(src)
    assert (info.width, info.height, info.count, info.dtype) == (7, 6, 3, "uint8")
    assert info.crs.to_epsg() == 32633 and info.transform == TRANSFORM and info.nodata == 0
    assert info.colorinterp == ("red", "green", "blue") and info.georeferenced


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.tif"
    with pytest.raises(RsgenError, match="not found") as err:
        read_raster_info(missing)
    assert str(missing) in str(err.value)


@pytest.mark.parametrize(("name", "content"), [("notes.png", b"hello, not an image\n"), ("empty.jpg", b"")])
def test_non_image_file(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(RsgenError) as err:
        read_raster_info(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("relaxed", [False, True])
def test_truncated_jpeg_and_png(
    tmp_path: Path, fmt: str, relaxed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Detected even when another library set Pillow's LOAD_TRUNCATED_IMAGES."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", relaxed)
    whole = tmp_path / f"whole.{fmt.lower()}"
    Image.fromarray(np.moveaxis(random_uint8(3, 40, 48), 0, -1)).save(whole, format=fmt)
    cut = tmp_path / f"cut.{fmt.lower()}"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(RsgenError, match="truncated") as err:
        upscale_raster(cut, tmp_path / "out.tif", nearest(2), 2, progress=False)
    assert str(cut) in str(err.value)
    assert not (tmp_path / "out.tif").exists()
    assert ImageFile.LOAD_TRUNCATED_IMAGES is relaxed  # restored


def test_truncated_tiff(tmp_path: Path) -> None:
    src = write_tif(tmp_path / "a.tif", random_uint8(3, 200, 200), compress="deflate")
    data = src.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(RsgenError, match="truncated") as err:
        read_raster_info(cut)
    assert str(cut) in str(err.value)


@pytest.mark.parametrize("size", [(1, 1), (1, 5), (5, 1)])
def test_too_small_image(tmp_path: Path, size: tuple[int, int]) -> None:
    path = tmp_path / "tiny.png"
    Image.new("RGB", size).save(path)
    with pytest.raises(RsgenError, match="at least 2x2") as err:
        upscale_raster(path, tmp_path / "out.png", nearest(2), 2, progress=False)
    assert str(path) in str(err.value)
    assert read_raster_info(path, min_size=1).width == size[0]


def test_unsupported_dtype(tmp_path: Path) -> None:
    src = write_tif(tmp_path / "c.tif", np.ones((1, 4, 4), np.complex64))
    with pytest.raises(RsgenError, match="unsupported data type complex64"):
        read_raster_info(src)


def test_palette_raster_is_rejected(tmp_path: Path) -> None:
    src = write_tif(tmp_path / "p.tif", np.zeros((1, 4, 4), np.uint8), photometric="palette")
    with rasterio.open(src, "r+") as ds:
        ds.write_colormap(1, {0: (255, 0, 0, 255), 1: (0, 255, 0, 255)})
    with pytest.raises(RsgenError, match="palette"):
        read_raster_info(src)


@pytest.mark.parametrize(
    ("dst_name", "message"),
    [("out.bmp", "unknown output format"), ("blocker/out.tif", "cannot write output"), ("out.jpg", "alpha")],
)
def test_bad_outputs(tmp_path: Path, dst_name: str, message: str) -> None:
    src = tmp_path / "in.png"
    Image.new("RGBA", (6, 6), (10, 20, 30, 255)).save(src)
    (tmp_path / "blocker").write_text("a file where a folder is needed")
    dst = tmp_path / dst_name
    with pytest.raises(RsgenError, match=message) as err:
        upscale_raster(src, dst, nearest(2), 2, progress=False)
    assert str(dst) in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "in.png"]


def test_four_bands_cannot_be_png(tmp_path: Path) -> None:
    src = write_tif(tmp_path / "rgbn.tif", np.zeros((4, 6, 6), np.uint16))
    with pytest.raises(RsgenError, match=r"4-band uint16 data as PNG; write a \.tif"):
        upscale_raster(src, tmp_path / "out.png", nearest(2), 2, progress=False)


# --------------------------------------------------------------------------- georeferencing


def test_georeferencing_is_kept_and_pixel_size_divided(tmp_path: Path) -> None:
    src = write_tif(
        tmp_path / "geo.tif", random_uint8(3, 10, 12), crs="EPSG:32633", transform=TRANSFORM, nodata=7
    )
    with rasterio.open(src, "r+") as ds:
        ds.update_tags(SENSOR="test-sat")
        ds.set_band_description(1, "red edge-ish")
    info = upscale_raster(src, tmp_path / "out.tiff", nearest(4), 4, tile=8, overlap=2, progress=False)
    with rasterio.open(tmp_path / "out.tiff") as ds:
        assert ds.crs.to_epsg() == 32633
        assert ds.transform == TRANSFORM @ Affine.scale(0.25)
        assert ds.res == (2.5, 2.5) and (ds.transform.c, ds.transform.f) == (TRANSFORM.c, TRANSFORM.f)
        assert ds.bounds == rasterio.open(src).bounds
        assert ds.nodata == 7 and ds.tags()["SENSOR"] == "test-sat" and ds.descriptions[0] == "red edge-ish"
        assert ds.profile["compress"] == "deflate" and ds.profile["tiled"]
    assert (info.width, info.height, info.nodata, info.transform) == (48, 40, 7, ds.transform)


def test_not_georeferenced_input_gets_no_geotransform(tmp_path: Path) -> None:
    src = write_tif(tmp_path / "plain.tif", random_uint8(3, 6, 6))
    info = upscale_raster(src, tmp_path / "out.tif", nearest(2), 2, progress=False)
    assert not info.georeferenced
    assert not read_raster_info(info.path).georeferenced


def test_nodata_is_masked_and_never_invented(tmp_path: Path) -> None:
    lr = np.full((3, 12, 12), 100, np.uint8)
    lr[:, :4, :5] = 0  # nodata corner
    src = write_tif(tmp_path / "nd.tif", lr, nodata=0)
    seen: list[float] = []

    def darken(x: torch.Tensor) -> torch.Tensor:  # sees the filled input, returns all zeros
        seen.append(float(x.min()))
        return nearest(2)(x) * 0

    upscale_raster(src, tmp_path / "out.tif", darken, 2, tile=8, overlap=2, progress=False)
    out = read_all(tmp_path / "out.tif")
    invalid = upsampled(lr == 0, 2)
    assert np.all(out[invalid] == 0)
    assert np.all(out[~invalid] == 1)  # valid pixels that came out as 0 are nudged off nodata
    assert min(seen) > 0.3  # nodata filled with the valid mean (100/255) before the model


def test_float_nan_pixels_stay_nan(tmp_path: Path) -> None:
    lr = np.linspace(-5, 5, 3 * 8 * 8, dtype=np.float32).reshape(3, 8, 8)
    lr[:, 0, 0] = np.nan
    src = write_tif(tmp_path / "f.tif", lr)
    upscale_raster(src, tmp_path / "out.tif", nearest(2), 2, progress=False)
    out = read_all(tmp_path / "out.tif")
    assert np.all(np.isnan(out[:, :2, :2])) and np.isfinite(out[:, 2:, 2:]).all()
    np.testing.assert_allclose(out[:, ::2, ::2][:, 1:], lr[:, 1:], atol=1e-5)


# --------------------------------------------------------------------------- data types


@pytest.mark.parametrize(
    ("dtype", "low", "high", "nodata"),
    [("uint16", 0, 65535, 0), ("uint16", 300, 4000, None), ("int16", -3000, 3000, -32768)],
)
def test_integer_identity_round_trip(
    tmp_path: Path, dtype: str, low: int, high: int, nodata: int | None
) -> None:
    rng = np.random.default_rng(1)
    lr = rng.integers(low, high, (3, 20, 23), endpoint=True).astype(dtype)
    if nodata is not None:
        lr[lr == nodata] = nodata + 1
        lr[:, 3:6, 4:9] = nodata
    src = write_tif(tmp_path / "in.tif", lr, crs="EPSG:4326", transform=TRANSFORM, nodata=nodata)
    info = upscale_raster(src, tmp_path / "out.tif", nearest(2), 2, tile=8, overlap=2, progress=False)
    out = read_all(info.path)
    assert out.dtype == np.dtype(dtype) and info.dtype == dtype
    diff = np.abs(out.astype(np.int64) - upsampled(lr, 2).astype(np.int64))
    assert diff.max() <= 1


def test_float32_round_trip(tmp_path: Path) -> None:
    lr = np.random.default_rng(2).normal(0.1, 0.05, (3, 10, 10)).astype(np.float32)
    src = write_tif(tmp_path / "in.tif", lr)
    out = read_all(upscale_raster(src, tmp_path / "out.tif", nearest(2), 2, progress=False).path)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, upsampled(lr, 2), atol=1e-6)


def test_uint16_model_input_is_a_percentile_stretch(tmp_path: Path) -> None:
    """The model sees a documented linear stretch, not values guessed from the data range."""
    lr = np.linspace(1000, 2000, 3 * 40 * 40).astype(np.uint16).reshape(3, 40, 40)
    src = write_tif(tmp_path / "in.tif", lr)
    seen: list[torch.Tensor] = []

    def model(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return torch.clamp(nearest(2)(x), 0, 1)  # output clipped to [0, 1] by the model

    out = read_all(upscale_raster(src, tmp_path / "out.tif", model, 2, tile=40, progress=False).path)
    x = torch.cat(seen)
    assert -0.01 < float(x.min()) < 0.0 and 1.0 < float(x.max()) < 1.01  # 0.1/99.9 pct: not clipped
    assert 1000 <= out.min() <= 1002 and 1998 <= out.max() <= 2000


def test_uint8_png_and_jpeg_inputs(tmp_path: Path) -> None:
    rgb = np.moveaxis(random_uint8(3, 10, 9), 0, -1)
    Image.fromarray(rgb).save(tmp_path / "in.png")
    Image.fromarray(rgb).save(tmp_path / "in.jpg", quality=95)
    out = upscale_raster(tmp_path / "in.png", tmp_path / "out.png", nearest(2), 2, progress=False)
    assert np.array_equal(read_rgb_uint8(out.path), upsampled(np.moveaxis(rgb, -1, 0), 2).transpose(1, 2, 0))
    out = upscale_raster(tmp_path / "in.jpg", tmp_path / "jpg.tif", nearest(2), 2, progress=False)
    assert (out.count, out.dtype) == (3, "uint8")


# --------------------------------------------------------------------------- bands


def recording(scale: int, calls: list[torch.Tensor], gains: tuple[float, float, float] = (1.0, 1.0, 1.0)):
    gain = torch.tensor(gains).view(1, 3, 1, 1)

    def model(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.clone())
        return nearest(scale)(x) * gain

    return model


def test_single_band_is_replicated_and_averaged(tmp_path: Path) -> None:
    lr = random_uint8(1, 9, 11)
    src = write_tif(tmp_path / "gray.tif", lr)
    calls: list[torch.Tensor] = []
    info = upscale_raster(src, tmp_path / "out.tif", recording(2, calls, (0.5, 1.0, 1.5)), 2, progress=False)
    x = torch.cat(calls)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
    assert info.count == 1
    assert np.abs(read_all(info.path).astype(int) - upsampled(lr, 2)).max() <= 1  # mean of the 3 outputs


def test_uint16_png_gray_keeps_16_bits(tmp_path: Path) -> None:
    lr = np.random.default_rng(3).integers(0, 65535, (7, 8), dtype=np.uint16)
    Image.fromarray(lr).save(tmp_path / "g16.png")
    info = upscale_raster(tmp_path / "g16.png", tmp_path / "out.png", nearest(2), 2, progress=False)
    with Image.open(info.path) as image:
        assert image.mode.startswith("I;16")
        assert np.abs(np.asarray(image).astype(int) - upsampled(lr, 2)).max() <= 1


def test_uint16_rgb_png_is_not_reduced_to_8_bits(tmp_path: Path) -> None:
    lr = np.random.default_rng(4).integers(0, 65535, (3, 6, 5), dtype=np.uint16)
    with rasterio.open(
        tmp_path / "rgb16.png", "w", driver="PNG", width=5, height=6, count=3, dtype="uint16"
    ) as ds:
        ds.write(lr)
    info = read_raster_info(tmp_path / "rgb16.png")
    assert (info.dtype, info.count) == ("uint16", 3)
    out = upscale_raster(tmp_path / "rgb16.png", tmp_path / "out.tif", nearest(2), 2, progress=False)
    assert np.abs(read_all(out.path).astype(int) - upsampled(lr, 2)).max() <= 1


def test_four_undeclared_bands_go_through_the_model_one_by_one(tmp_path: Path) -> None:
    lr = np.random.default_rng(5).integers(100, 5000, (4, 12, 12)).astype(np.uint16)
    src = write_tif(tmp_path / "rgbn.tif", lr)  # GDAL default: gray + undefined bands
    calls: list[torch.Tensor] = []
    info = upscale_raster(src, tmp_path / "out.tif", recording(2, calls), 2, tile=12, progress=False)
    x = torch.cat(calls)
    assert x.shape[0] == 4  # one model input per band
    assert all(torch.equal(t[0], t[1]) and torch.equal(t[1], t[2]) for t in x)
    assert info.count == 4 and info.dtype == "uint16"
    assert np.abs(read_all(info.path).astype(int) - upsampled(lr, 2)).max() <= 1


def test_declared_rgb_plus_nir_uses_rgb_path_and_single_band(tmp_path: Path) -> None:
    lr = random_uint8(4, 10, 10, seed=6)
    roles = [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]  # BGRN order
    src = write_tif(tmp_path / "bgrn.tif", lr, roles=roles, photometric="minisblack")
    assert read_raster_info(src).colorinterp == ("blue", "green", "red", "undefined")
    calls: list[torch.Tensor] = []
    info = upscale_raster(src, tmp_path / "out.tif", recording(2, calls), 2, tile=10, progress=False)
    rgb_input, nir_input = torch.cat(calls)
    assert torch.allclose(rgb_input[0] * 255, torch.from_numpy(lr[2]).float())  # red first
    assert torch.equal(nir_input[0], nir_input[2])
    out = read_all(info.path)
    assert np.abs(out.astype(int) - upsampled(lr, 2)).max() <= 1
    assert read_raster_info(info.path).colorinterp == ("blue", "green", "red", "undefined")


def test_two_bands_are_processed_per_band(tmp_path: Path) -> None:
    lr = np.random.default_rng(7).integers(0, 3000, (2, 8, 8)).astype(np.uint16)
    src = write_tif(tmp_path / "two.tif", lr)
    calls: list[torch.Tensor] = []
    info = upscale_raster(src, tmp_path / "out.tif", recording(2, calls), 2, progress=False)
    assert torch.cat(calls).shape[0] == 2
    assert np.abs(read_all(info.path).astype(int) - upsampled(lr, 2)).max() <= 1


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_png_keeps_alpha_without_the_model(tmp_path: Path, mode: str) -> None:
    channels = len(mode)
    pixels = np.moveaxis(random_uint8(channels, 9, 10, seed=8), 0, -1)
    Image.fromarray(pixels, mode=mode).save(tmp_path / "in.png")
    calls: list[torch.Tensor] = []

    def brighten(x: torch.Tensor) -> torch.Tensor:
        calls.append(x)
        return nearest(3)(x) + 0.5

    info = upscale_raster(
        tmp_path / "in.png", tmp_path / "out.png", brighten, 3, tile=6, overlap=2, progress=False
    )
    with Image.open(info.path) as image:
        assert image.mode == mode and image.size == (30, 27)
        out = np.asarray(image)
    np.testing.assert_array_equal(out[..., -1], upsampled(pixels[..., -1], 3))  # alpha: nearest, exact
    assert np.all(out[..., 0] >= np.minimum(upsampled(pixels[..., 0], 3), 128))  # colour went through model
    assert all(x.shape[1] == 3 for x in calls)


def test_rgba_geotiff_keeps_alpha_role(tmp_path: Path) -> None:
    lr = random_uint8(4, 8, 8, seed=9)
    src = write_tif(tmp_path / "rgba.tif", lr)  # GDAL default for 4 x uint8: RGBA
    info = upscale_raster(src, tmp_path / "out.tif", nearest(2), 2, progress=False)
    assert read_raster_info(info.path).colorinterp == ("red", "green", "blue", "alpha")
    assert np.array_equal(read_all(info.path), upsampled(lr, 2))


# --------------------------------------------------------------------------- helpers


def test_output_file_has_normal_permissions(tmp_path: Path) -> None:
    src = write_tif(tmp_path / "in.tif", random_uint8(3, 4, 4))
    info = upscale_raster(src, tmp_path / "out.tif", nearest(2), 2, progress=False)
    umask = os.umask(0)
    os.umask(umask)
    assert info.path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_rgb_helpers_round_trip_with_georeferencing(tmp_path: Path) -> None:
    lr = write_tif(tmp_path / "lr.tif", random_uint8(3, 5, 6), crs="EPSG:32633", transform=TRANSFORM)
    rgb = np.moveaxis(random_uint8(3, 20, 24, seed=1), 0, -1)
    for name in ("hr.tif", "hr.png"):
        write_rgb_uint8(tmp_path / name, rgb, like=lr)
        assert np.array_equal(read_rgb_uint8(tmp_path / name), rgb)
    info = read_raster_info(tmp_path / "hr.tif")
    assert info.crs.to_epsg() == 32633 and info.transform == TRANSFORM @ Affine.scale(0.25)
    gray = tmp_path / "gray.png"
    Image.new("L", (3, 2), 77).save(gray)
    assert read_rgb_uint8(gray).shape == (2, 3, 3)
    with pytest.raises(RsgenError, match="8-bit"):
        read_rgb_uint8(write_tif(tmp_path / "u16.tif", np.zeros((3, 4, 4), np.uint16)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gray.png", "hr.png", "hr.tif", "lr.tif", "u16.tif"]


def test_list_images(tmp_path: Path) -> None:
    (tmp_path / "b" / "deep").mkdir(parents=True)
    for name in ["z.PNG", "a.tif", "b/deep/c.JPEG", "b/x.Tiff", "notes.txt", "._a.tif", "b/y.jpg"]:
        (tmp_path / name).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert found == ["a.tif", "b/deep/c.JPEG", "b/x.Tiff", "b/y.jpg", "z.PNG"]
    assert list_images(tmp_path / "a.tif") == [tmp_path / "a.tif"]
    for bad, message in [("notes.txt", "not an image"), ("missing", "no such"), ("empty", "no images")]:
        if bad == "empty":
            (tmp_path / "empty").mkdir()
        with pytest.raises(RsgenError, match=message) as err:
            list_images(tmp_path / bad)
        assert str(tmp_path / bad) in str(err.value)


def test_exif_orientation_is_applied(tmp_path):
    """A phone/drone JPEG stored landscape with orientation 6 (rotate 90° clockwise) reads as the
    portrait picture viewers show."""
    from rsgen.io import read_rgb_uint8

    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)  # red on the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    pixels = read_rgb_uint8(path)
    assert pixels.shape == (60, 40, 3)
    assert pixels[:15, :, 0].mean() > 200 and pixels[-15:, :, 0].mean() < 60  # left edge is now the top


def test_a_named_pipe_is_refused_without_blocking(tmp_path):
    import os

    from rsgen.io import read_raster_info

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(RsgenError, match="not a regular file"):
        read_raster_info(fifo)
