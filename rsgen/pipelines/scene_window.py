"""The part of a scene file that an edit works on, and how the result goes back into a copy.

A scene up to ``limit`` px per side is edited whole; a larger one only in a context window around
its ROI (:func:`rsgen.io.windows.context_window`), which is read as RGB and written back into a
copy of the scene with its georeferencing, data type, nodata and other bands intact. ``rsgen edit``
and the browser app's Edit tab both go through :class:`SceneWindow`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rsgen.errors import RsgenError
from rsgen.files import atomic_file
from rsgen.io.read import read_raster_info
from rsgen.io.rgb import read_rgb_uint8
from rsgen.io.windows import (
    PixelWindow,
    WindowContext,
    check_rect,
    context_window,
    read_window_rgb,
    write_edited_scene,
)
from rsgen.pipelines.editor import editable_mask

Rect = tuple[int, int, int, int]


@dataclass
class SceneWindow:
    """The scene file, the window of it that is edited (``rgb``), the ROI or mask inside that
    window, and what writing the result back needs (``context``)."""

    path: Path
    window: PixelWindow
    rgb: np.ndarray
    context: WindowContext
    roi: Rect | None
    mask: np.ndarray | None

    @classmethod
    def open(
        cls,
        path: str | Path,
        roi: tuple[int, ...] | None = None,
        mask_path: str | Path | None = None,
        limit: int = 768,
        region_hint: str = "with --roi or --mask",
    ) -> SceneWindow:
        """Read the window of ``path`` to edit: all of it up to ``limit`` px per side, else a
        context window around ``roi`` (or the bounding box of the mask at ``mask_path``). A large
        scene without either is a one-line error telling the user to give one ``region_hint``."""
        path = Path(path)
        if not path.is_file():
            raise RsgenError("image not found", path)
        info = read_raster_info(path)
        mask = None
        if mask_path is not None:
            mask = read_mask(Path(mask_path), info.width, info.height)
            ys, xs = np.nonzero(mask)
            roi = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
        if roi is not None:
            roi = tuple(check_rect(roi, info.width, info.height, "ROI", path))
        if max(info.width, info.height) <= limit:
            window = PixelWindow(0, 0, info.width, info.height)
        elif roi is None:
            raise RsgenError(
                f"scene is {info.width}x{info.height} px: edit a region of it {region_hint} "
                f"(or downscale it to at most {limit} px)",
                path,
            )
        else:
            window = context_window(roi, info.width, info.height, max_side=limit, path=path)
        rgb, context = read_window_rgb(path, window)
        local_roi = None
        if roi is not None and mask is None:
            local_roi = (roi[0] - window.x, roi[1] - window.y, roi[2], roi[3])
        local_mask = None
        if mask is not None:
            local_mask = mask[window.y : window.y + window.height, window.x : window.x + window.width]
        return cls(path, window, rgb, context, local_roi, local_mask)

    def to_window(self, rect: Rect, what: str = "--copy-from") -> Rect:
        """A scene rectangle in the window's coordinates (a one-line error if it lies outside)."""
        x, y, w, h = rect
        win = self.window
        if not (win.x <= x and win.y <= y and x + w <= win.x + win.width and y + h <= win.y + win.height):
            raise RsgenError(f"{what} {x},{y},{w},{h} lies outside the edited window {win}")
        return x - win.x, y - win.y, w, h

    def write(self, output: str | Path, result: Any) -> list[Path]:
        """Write the edited scene (``result.image`` where ``result.changed``) and, beside it,
        ``<stem>_before_after.png``; both atomically."""
        output = Path(output)
        write_edited_scene(self.path, output, self.context, np.asarray(result.image), result.changed)
        pair = output.with_name(output.stem + "_before_after.png")
        with atomic_file(pair) as tmp:
            result.before_after().save(tmp, format="PNG")
        return [output, pair]


def read_mask(path: Path, width: int, height: int) -> np.ndarray:
    """A binary ROI mask image of the scene's size, as a boolean array (one-line errors)."""
    if not path.is_file():
        raise RsgenError("mask not found", path)
    array = read_rgb_uint8(path)[..., 0]
    try:
        return editable_mask((height, width), None, array)
    except RsgenError as exc:
        raise RsgenError(str(exc), path) from exc
