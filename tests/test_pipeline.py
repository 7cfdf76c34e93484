"""SuperResolver, the Python API: in-memory images, files, GeoTIFFs, folders and sharding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import Affine

from rsgen.device import resolve_device
from rsgen.errors import RsgenError
from rsgen.io import read_raster_info
from rsgen.pipelines import SuperResolver
from rsgen.pipelines.demo import center_crop, comparison_strip
from rsgen.pipelines.super_resolution import plan_folder
from tests.conftest import textured_image

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

UTM_TRANSFORM = Affine.translation(600000.0, 5340000.0) @ Affine.scale(0.6, -0.6)


@pytest.fixture
def resolver(tiny_model_dir: Path) -> SuperResolver:
    return SuperResolver.from_pretrained(tiny_model_dir, device="cpu")


def write_geotiff(path: Path, image: np.ndarray) -> Path:
    height, width = image.shape[:2]
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=UTM_TRANSFORM,
        photometric="RGB",
    ) as ds:
        ds.write(np.moveaxis(image, -1, 0))
    return path


def test_from_pretrained_reads_name_and_scale(tiny_model_dir: Path) -> None:
    resolver = SuperResolver.from_pretrained(tiny_model_dir, scale=2, device="cpu")
    assert resolver.scale == 2
    assert resolver.name == "tiny-x2"
    assert str(resolver.device) == "cpu"


def test_pil_in_pil_out(resolver: SuperResolver) -> None:
    image = Image.fromarray(textured_image((12, 10)))
    out = resolver(image)
    assert isinstance(out, Image.Image)
    assert out.size == (20, 24) and out.mode == "RGB"


def test_numpy_in_numpy_out(resolver: SuperResolver) -> None:
    out = resolver(textured_image((12, 10)))
    assert isinstance(out, np.ndarray)
    assert out.shape == (24, 20, 3) and out.dtype == np.uint8


def test_gray_pil_is_converted_but_bad_arrays_are_rejected(resolver: SuperResolver) -> None:
    assert resolver(Image.fromarray(textured_image((8, 8))).convert("L")).size == (16, 16)
    with pytest.raises(RsgenError, match="expected an RGB uint8 image"):
        resolver(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(RsgenError, match="expected an RGB uint8 image"):
        resolver(np.zeros((8, 8), np.uint8))


def test_scale_mismatch_is_an_error(tiny_model_dir: Path) -> None:
    with pytest.raises(RsgenError, match="model is for x2, not x4") as info:
        SuperResolver.from_pretrained(tiny_model_dir, scale=4)
    assert str(tiny_model_dir) in str(info.value)


def test_other_architecture_is_rejected_before_weights(tiny_model_dir: Path) -> None:
    config = tiny_model_dir / "config.json"
    config.write_text(json.dumps({"model": {"name": "degan_discriminator"}}))
    (tiny_model_dir / "model.safetensors").unlink()
    with pytest.raises(RsgenError, match="not a super-resolution model .*degan_discriminator"):
        SuperResolver.from_pretrained(tiny_model_dir)


def test_unknown_model_name_lists_builtins() -> None:
    with pytest.raises(RsgenError, match="no such model folder or built-in model"):
        SuperResolver.from_pretrained("degan-x9-does-not-exist")


@pytest.mark.parametrize("device", ["foo", "cuda:99", "xpu", "meta"])
def test_unusable_device_is_an_error(device: str) -> None:
    with pytest.raises(RsgenError, match=device):
        resolve_device(device)


def test_upscale_file_png_to_png(resolver: SuperResolver, tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    Image.fromarray(textured_image((10, 14))).save(src)
    info = resolver.upscale_file(src, tmp_path / "out" / "big.png", progress=False)
    assert (info.width, info.height, info.count, info.dtype) == (28, 20, 3, "uint8")
    with Image.open(tmp_path / "out" / "big.png") as out:
        assert out.size == (28, 20) and out.mode == "RGB"


def test_upscale_file_geotiff_keeps_crs_and_halves_pixel_size(
    resolver: SuperResolver, tmp_path: Path
) -> None:
    src = write_geotiff(tmp_path / "scene.tif", textured_image((12, 16)))
    info = resolver.upscale_file(src, tmp_path / "scene_x2.tif", progress=False)
    out = read_raster_info(tmp_path / "scene_x2.tif")
    assert info.crs == out.crs and out.crs.to_epsg() == 32633
    assert (out.width, out.height) == (32, 24)
    assert out.transform.almost_equals(UTM_TRANSFORM @ Affine.scale(0.5))
    assert (out.transform.a, out.transform.e) == pytest.approx((0.3, -0.3))
    assert (out.transform.c, out.transform.f) == (600000.0, 5340000.0)


def test_upscale_folder_keeps_stems_and_subfolders(
    resolver: SuperResolver, image_folder: Path, tmp_path: Path
) -> None:
    seen: list[tuple[Path, Path]] = []
    written = resolver.upscale_folder(
        image_folder, tmp_path / "out", progress=False, on_done=lambda s, d, _: seen.append((s, d))
    )
    relative = sorted(str(p.relative_to(tmp_path / "out")) for p in written)
    assert relative == ["img0.png", "img2.png", "img4.jpg", "sub/img1.png", "sub/img3.png", "sub/img5.jpg"]
    assert all(p.is_file() for p in written) and len(seen) == 6
    assert read_raster_info(tmp_path / "out" / "sub" / "img5.jpg").width == 96


def test_upscale_folder_format_change(resolver: SuperResolver, image_folder: Path, tmp_path: Path) -> None:
    shutil.rmtree(image_folder / "sub")
    written = resolver.upscale_folder(image_folder, tmp_path / "out", suffix=".tif", progress=False)
    assert sorted(p.name for p in written) == ["img0.tif", "img2.tif", "img4.tif"]


def test_rank_shards_cover_every_file_once(image_folder: Path, tmp_path: Path) -> None:
    shards = [plan_folder(image_folder, tmp_path / "out", None, rank, 2) for rank in (0, 1)]
    inputs = [src for shard in shards for src, _ in shard]
    assert len(shards[0]) == len(shards[1]) == 3
    assert sorted(inputs) == sorted(image_folder.rglob("*.*")) and len(set(inputs)) == 6


def test_rank_shard_upscale_writes_only_its_files(
    resolver: SuperResolver, image_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = resolver.upscale_folder(image_folder, out, rank=0, world_size=2, progress=False)
    second = resolver.upscale_folder(image_folder, out, rank=1, world_size=2, progress=False)
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(out.rglob("*.*")) and len(first + second) == 6


def test_bad_rank_is_an_error(image_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(RsgenError, match="rank"):
        plan_folder(image_folder, tmp_path / "out", None, rank=2, world_size=2)


def test_output_folder_inside_input_is_skipped(image_folder: Path) -> None:
    (image_folder / "out").mkdir()
    Image.fromarray(textured_image((8, 8))).save(image_folder / "out" / "old.png")
    jobs = plan_folder(image_folder, image_folder / "out")
    assert len(jobs) == 6 and all(src.parent.name != "out" for src, _ in jobs)


def test_two_inputs_for_one_output_is_an_error(image_folder: Path, tmp_path: Path) -> None:
    shutil.copy(image_folder / "img4.jpg", image_folder / "img0.jpg")
    with pytest.raises(RsgenError, match="img0.jpg and .*img0.png would both be written"):
        plan_folder(image_folder, tmp_path / "out", ".tif")


def test_bad_file_in_folder_fails_before_any_output(
    resolver: SuperResolver, image_folder: Path, tmp_path: Path
) -> None:
    (image_folder / "sub" / "zz_broken.png").write_text("not an image")
    with pytest.raises(RsgenError, match="zz_broken.png: not a PNG"):
        resolver.upscale_folder(image_folder, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_demo_helpers() -> None:
    crop = center_crop(textured_image((30, 41)), 32, 4)
    assert crop.shape == (28, 32, 3)
    with pytest.raises(RsgenError, match="too small"):
        center_crop(textured_image((6, 6)), 32, 4)
    strip = comparison_strip([crop] * 4)
    assert strip.size[0] == 4 * 32 + 3 * 4 and strip.size[1] > 28


def test_bf16_autocast_stays_close_to_fp32(tiny_model_dir: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    fp32 = SuperResolver.from_pretrained(tiny_model_dir)(image).astype(int)
    bf16 = SuperResolver.from_pretrained(tiny_model_dir, bf16=True)(image).astype(int)
    assert np.abs(fp32 - bf16).mean() < 2.0
