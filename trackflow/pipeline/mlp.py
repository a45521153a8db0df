"""The multilayer perceptron every model of the pipeline is built from (one place, one recipe)."""

from __future__ import annotations

import torch
from torch import nn

# Rows (hits or edges) an MLP processes at a time on a CPU: a block's activations (8192 x 128
# float32 = 4 MiB) stay in cache between layers, measured 1.7-2.3x faster than whole tensors
# (benchmarks/stage_flops.py). On CUDA whole chunks go at once (fewer kernel launches).
CPU_BLOCK_ROWS = 8192


def block_rows(device: torch.device, limit: int) -> int:
    """Rows per model call on ``device``, at most ``limit`` (a memory bound)."""
    return max(1, min(limit, CPU_BLOCK_ROWS) if device.type == "cpu" else limit)


def make_mlp(
    in_features: int,
    hidden: int,
    n_layers: int,
    out_features: int,
    *,
    layer_norm: bool = True,
    output_activation: bool = False,
) -> nn.Sequential:
    """``n_layers`` hidden blocks Linear -> LayerNorm -> tanh, then Linear to ``out_features``.

    tanh with LayerNorm is the Exa.TrkX recipe (REFERENCE.md §2): bounded activations keep sums
    over many neighbours (GNN aggregation) in range. ``output_activation`` adds LayerNorm + tanh
    after the last Linear too (used for hidden representations inside the GNN).
    """
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(n_layers):
        layers.append(nn.Linear(width, hidden))
        if layer_norm:
            layers.append(nn.LayerNorm(hidden))
        layers.append(nn.Tanh())
        width = hidden
    layers.append(nn.Linear(width, out_features))
    if output_activation:
        if layer_norm:
            layers.append(nn.LayerNorm(out_features))
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def count_matmul_flops(mlp: nn.Sequential, n_rows: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of the Linear layers of ``mlp`` applied to ``n_rows`` rows."""
    return sum(2 * n_rows * m.in_features * m.out_features for m in mlp if isinstance(m, nn.Linear))
