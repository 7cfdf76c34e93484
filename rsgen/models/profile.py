"""Parameter and FLOP counts of a network (``rsgen info``)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula, sdpa_flop_count

# PyTorch's counter knows the CUDA attention kernels but not the CPU one that
# `scaled_dot_product_attention` dispatches to here: without this, attention counts as zero.
_CPU_SDPA = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001
    return sdpa_flop_count(query_shape, key_shape, value_shape)


if _CPU_SDPA not in flop_registry and _CPU_SDPA.default not in flop_registry:
    register_flop_formula(_CPU_SDPA)(_cpu_sdpa_flops)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass (PyTorch's FLOP counter / 2).

    Papers' "FLOPs" for SR networks are usually MACs (thop/ptflops convention); the
    counter covers convolutions, transposed convolutions, matrix products and fused attention
    (``scaled_dot_product_attention``, on CPU too).
    """
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(*inputs)
    model.train(was_training)
    return counter.get_total_flops() // 2
