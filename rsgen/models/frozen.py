"""Networks used as fixed functions: feature extractors and metric networks."""

from __future__ import annotations

from typing import Self

from torch import nn


class FrozenModule(nn.Module):
    """A network used as a fixed function (feature extractors, metric networks): after
    :meth:`freeze` its weights get no gradients (inputs still can), and it never leaves eval
    mode, so BatchNorm statistics cannot move."""

    def freeze(self) -> Self:
        """Eval mode, no gradients to the weights."""
        self.eval()
        self.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> Self:
        return super().train(False)
