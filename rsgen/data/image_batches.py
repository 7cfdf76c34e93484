"""Image sets streamed as model batches: rsgen's one image-batch iterator.

Used by every evaluation that embeds a folder of images (FD/KID/IS, CLIP score, retrieval,
scene classification).

Listing
    A folder is listed with :func:`rsgen.io.list_images` (recursive, sorted by path, hidden
    files skipped); :func:`image_paths` also takes one file or an explicit list.

Streaming
    :func:`iter_image_batches` reads ``batch_size`` images at a time, the next batch being
    decoded in a background thread while the caller works on the current one, with a progress
    bar on stderr counting images. Only two batches of pixels are in memory at once.

Transforms
    Each image is read as ``(H, W, 3)`` uint8 and turned into a ``(3, S, S)`` float tensor in
    [-1, 1] by a transform, on its own, as soon as it is read, so a folder may mix image
    sizes. Transforms convert with :func:`rsgen.data.images.image_to_tensor` (the one
    convention): :func:`tensor_transform` converts and then resizes the float tensor (the
    metric extractors' resize), :func:`center_square_transform` resizes and crops the uint8
    image first (bicubic, as the image–text models were trained).

Input checks
    :func:`read_rgb_strict`, the metrics' reader, accepts only 8-bit 3-band RGB: grayscale,
    grayscale + alpha, RGBA and multiband images raise :class:`RsgenError` naming the file and
    its layout, rather than being silently converted (a grayscale "generated" set compared with
    RGB references would give a meaningless number). A PNG palette image without transparency
    is expanded to RGB (lossless) and accepted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from rsgen.data.images import center_square, image_to_tensor
from rsgen.errors import RsgenError
from rsgen.progress import progress_bar

DEFAULT_BATCH_SIZE = 32

ImageSource = str | Path | Sequence[str | Path] | torch.Tensor
"""A folder or image file, a list of image files, or a tensor ``(N, 3, H, W)`` in [-1, 1]."""
Reader = Callable[[Path], np.ndarray]
"""Reads one image file as ``(H, W, 3)`` uint8."""
Transform = Callable[[np.ndarray], torch.Tensor]
"""``(H, W, 3)`` uint8 image → ``(3, S, S)`` float tensor in [-1, 1], S fixed."""
BatchResize = Callable[[torch.Tensor], torch.Tensor]
"""``(B, 3, H, W)`` float batch → ``(B, 3, S, S)``."""


# --------------------------------------------------------------------------- listing, reading


def image_paths(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """The image files of ``source``: a folder (recursive, sorted; see :func:`rsgen.io.list_images`),
    one image file, or an explicit list. RsgenError for a missing or empty folder."""
    from rsgen.io import list_images

    if isinstance(source, str | Path):
        return list_images(source)
    paths = [Path(p) for p in source]
    if not paths:
        raise RsgenError("no images given")
    return paths


def source_name(source: object) -> str | None:
    """How results name an image source: the folder or file path, or None (a list, a tensor)."""
    return str(source) if isinstance(source, str | Path) else None


def _layout_problem(count: int, roles: tuple[str, ...]) -> str | None:
    """Why a band layout is not RGB, or None when it is."""
    if count == 3:
        return None
    if count == 1:
        return "is grayscale (1 band)"
    if count == 2 and roles[-1:] == ("alpha",):
        return "is grayscale with alpha (2 bands)"
    if count == 4 and roles[-1:] == ("alpha",):
        return "is RGBA (4 bands with alpha)"
    return f"has {count} bands"


def read_rgb_strict(path: str | Path) -> np.ndarray:
    """Read an 8-bit 3-band RGB image as ``(H, W, 3)`` uint8.

    Unlike :func:`rsgen.io.read_rgb_uint8`, converts nothing: raises :class:`RsgenError`
    naming the file when it is missing, unreadable, not 8-bit, or grayscale / grayscale + alpha
    / RGBA / multiband ("is grayscale (1 band); metrics need 3-band 8-bit RGB images").
    """
    from rasterio.windows import Window

    from rsgen.io.read import open_raster

    with open_raster(path, min_size=1) as source:
        info = source.info
        problem = _layout_problem(info.count, info.colorinterp)
        if problem is None and info.dtype != "uint8":
            problem = f"is {info.dtype}, not 8-bit"
        if problem is not None:
            raise RsgenError(f"{problem}; metrics need 3-band 8-bit RGB images", info.path)
        bands = source.read(Window(0, 0, info.width, info.height))
    return np.moveaxis(bands, 0, -1)


# --------------------------------------------------------------------------- transforms


def tensor_transform(resize: BatchResize) -> Transform:
    """Convert with :func:`image_to_tensor`, then ``resize`` the float image (as a contiguous
    batch of one, so the resize and the network see the memory layout of an in-memory batch)."""

    def transform(image: np.ndarray) -> torch.Tensor:
        return resize(image_to_tensor(image).unsqueeze(0).contiguous())[0]

    return transform


def center_square_transform(size: int) -> Transform:
    """Resize the short side to ``size`` and centre-crop (:func:`center_square`, bicubic on
    uint8), then convert with :func:`image_to_tensor`."""

    def transform(image: np.ndarray) -> torch.Tensor:
        return image_to_tensor(center_square(image, size))

    return transform


# --------------------------------------------------------------------------- batches


def _load_batch(paths: Sequence[Path], read: Reader, transform: Transform) -> torch.Tensor:
    return torch.stack([transform(read(path)) for path in paths])


def iter_image_batches(
    paths: Sequence[Path],
    transform: Transform,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    desc: str = "images",
    read: Reader = read_rgb_strict,
) -> Iterator[torch.Tensor]:
    """Yield ``(b, 3, S, S)`` float batches in [-1, 1] of ``paths``, in order: each image read
    with ``read`` (strict 8-bit RGB by default) and turned into a tensor by ``transform``
    (which must give one size).

    The next batch is decoded in a background thread; a progress bar on stderr counts images.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    chunks = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    bar = progress_bar(total=len(paths), desc=desc, enabled=progress, unit="img")
    with bar, ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_load_batch, chunks[0], read, transform) if chunks else None
        for index in range(len(chunks)):
            batch = pending.result()
            if index + 1 < len(chunks):
                pending = pool.submit(_load_batch, chunks[index + 1], read, transform)
            yield batch
            bar.update(len(batch))


def iter_tensor_batches(images: torch.Tensor, resize: BatchResize, batch_size: int) -> Iterator[torch.Tensor]:
    """Yield ``resize``-d slices of ``batch_size`` images of a float tensor ``(N, 3, H, W)`` in
    [-1, 1] (the in-memory counterpart of :func:`iter_image_batches`); ValueError for another shape."""
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(
            f"expected float images (N, 3, H, W) in [-1, 1], got {tuple(images.shape)} {images.dtype}"
        )
    for start in range(0, images.shape[0], batch_size):
        yield resize(images[start : start + batch_size])
