"""Parameter and FLOP counts of a network (``rsgen info``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass (PyTorch's FLOP counter / 2).

    Papers' "FLOPs" for SR networks are usually MACs (thop/ptflops convention); the
    counter covers convolutions, transposed convolutions and matrix products.
    """
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(*inputs)
    model.train(was_training)
    return counter.get_total_flops() // 2
