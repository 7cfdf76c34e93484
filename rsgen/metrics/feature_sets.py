"""Feature sets: an image set embedded once by a metric extractor, kept, saved and reloaded.

:func:`extract_features` streams a folder, a list of files or a tensor through a
:class:`~rsgen.metrics.features.MetricExtractor` (reading and resizing as described in
:mod:`rsgen.data.image_batches`) and keeps only what the metrics need per image: its feature
vector and, for IS, its logits (N x 1280 float32 for EfficientNet-Lite0, 5 MiB per 1000
images). Embedding once lets FD, KID and IS share one pass, and lets a reference set be
embedded once and compared with many generated sets: pass a :class:`FeatureSet` wherever an
image set is expected, or save it with :meth:`FeatureSet.save`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsgen.data.image_batches import (
    DEFAULT_BATCH_SIZE,
    ImageSource,
    image_paths,
    iter_image_batches,
    iter_tensor_batches,
    source_name,
    tensor_transform,
)
from rsgen.errors import RsgenError
from rsgen.metrics.features import DEFAULT_METRIC_EXTRACTOR, MetricExtractor, build_metric_extractor


@dataclass
class FeatureSet:
    """The extractor features (and optionally logits) of one image set, computed once.

    ``features``: ``(N, num_features)`` float32 on the CPU; ``logits``: ``(N, num_classes)`` or
    None; ``extractor``: the extractor name (metrics refuse to mix two extractors).
    """

    features: torch.Tensor
    logits: torch.Tensor | None
    extractor: str
    weights: str | None = None
    source: str | None = None

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def save(self, path: str | Path) -> Path:
        """Write a ``.npz`` file (features, logits, extractor name) for :meth:`load`."""
        path = Path(path)
        meta = {"extractor": self.extractor, "weights": self.weights, "source": self.source}
        arrays = {"features": self.features.numpy(), "meta": np.array(json.dumps(meta))}
        if self.logits is not None:
            arrays["logits"] = self.logits.numpy()
        try:
            with path.open("wb") as fh:
                np.savez(fh, **arrays)
        except OSError as exc:
            raise RsgenError(f"cannot write features: {exc.strerror or exc}", path) from exc
        return path

    @classmethod
    def load(cls, path: str | Path) -> FeatureSet:
        """Read a file written by :meth:`save`; RsgenError if it is not one."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                features = torch.from_numpy(data["features"].astype(np.float32))
                logits = torch.from_numpy(data["logits"].astype(np.float32)) if "logits" in data else None
        except FileNotFoundError as exc:
            raise RsgenError("feature file not found", path) from exc
        except (OSError, ValueError, KeyError) as exc:
            raise RsgenError(f"not an rsgen feature file ({exc})", path) from exc
        return cls(features, logits, meta["extractor"], meta.get("weights"), meta.get("source"))


def extract_features(
    source: ImageSource | FeatureSet,
    extractor: MetricExtractor | str,
    *,
    logits: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str | None = None,
) -> FeatureSet:
    """Embed an image set with ``extractor``, streaming it in batches (see the module docstring).

    ``source``: a folder or image file, a list of files, a tensor ``(N, 3, H, W)`` in [-1, 1],
    or an existing :class:`FeatureSet` (returned as is after checking it has what is asked).
    ``extractor``: an instance or a registry name. ``logits=True`` also keeps the class logits
    (for IS).
    """
    if isinstance(extractor, str):
        extractor = build_metric_extractor(extractor)
    if isinstance(source, FeatureSet):
        return _checked(source, extractor.name, logits)
    extractor.to(device)
    if isinstance(source, torch.Tensor):
        batches = iter_tensor_batches(source, extractor.resize, batch_size)
    else:
        batches = iter_image_batches(
            image_paths(source),
            tensor_transform(extractor.resize),
            batch_size=batch_size,
            progress=progress,
            desc=desc or extractor.name,
        )
    feats, outs = [], []
    with torch.inference_mode():
        for batch in batches:
            batch = batch.to(device)
            if logits:
                f, out = extractor.features_and_logits(batch)
                outs.append(out.float().cpu())
            else:
                f = extractor.features(batch)
            feats.append(f.float().cpu())
    if not feats:
        raise RsgenError(f"no images to embed in {source_name(source) or 'the given tensor'}")
    return FeatureSet(
        features=torch.cat(feats),
        logits=torch.cat(outs) if logits else None,
        extractor=extractor.name,
        weights=extractor.weights,
        source=source_name(source),
    )


def _checked(features: FeatureSet, extractor_name: str, logits: bool) -> FeatureSet:
    """``features`` itself, if it comes from ``extractor_name`` and has logits when asked."""
    check_same_extractor([features], extractor_name)
    if logits and features.logits is None:
        where = features.source or "this set"
        raise RsgenError(f"the {extractor_name} features of {where} have no logits")
    return features


def check_same_extractor(sets: Sequence[FeatureSet], name: str | None = None) -> str:
    """The one extractor name of ``sets`` (and ``name``); RsgenError if they mix extractors."""
    names = {s.extractor for s in sets} | ({name} if name else set())
    if len(names) > 1:
        raise RsgenError(f"cannot compare features of different extractors ({', '.join(sorted(names))})")
    return names.pop()


def _resolve_extractor(
    extractor: MetricExtractor | str | None, sources: Sequence[object]
) -> MetricExtractor | None:
    """``extractor`` itself, built from its name, or the default when some source needs embedding."""
    if isinstance(extractor, str):
        return build_metric_extractor(extractor)
    if extractor is None and not all(isinstance(s, FeatureSet) for s in sources):
        return build_metric_extractor(DEFAULT_METRIC_EXTRACTOR)
    return extractor


def embed_sets(
    sources: Sequence[ImageSource | FeatureSet],
    extractor: MetricExtractor | str | None,
    want_logits: Sequence[bool],
    descs: Sequence[str],
    options: dict[str, Any],
) -> list[FeatureSet]:
    """:func:`extract_features` of each source (``options``: its keyword arguments), all on one
    extractor: ``extractor``, built from its name, or ``efficientnet-lite0`` when None and some
    source is not a :class:`FeatureSet` yet. ``descs`` name the progress bars."""
    net = _resolve_extractor(extractor, sources)
    sets = []
    for source, logits, desc in zip(sources, want_logits, descs, strict=True):
        if isinstance(source, FeatureSet) and net is None:
            sets.append(source)
        else:
            sets.append(extract_features(source, net, logits=logits, desc=f"{desc} [{net.name}]", **options))
    check_same_extractor(sets)
    return sets
