"""The multilayer perceptron every model of the pipeline is built from (one place, one recipe)."""

from __future__ import annotations

import torch
from torch import nn

# Rows (hits or edges) an MLP processes at a time on a CPU. A hidden-128 block's activations are
# then 2048 x 128 float32 = 1 MiB in and 1 MiB out, inside this CPU's 2 MiB L2 per core; 8192
# rows (4 MiB) spilled to L3 and were 5-10 % slower, whole 100k-row tensors (out of every cache)
# about 2x slower (benchmarks/mlp_blocks.py). On CUDA whole chunks go at once (fewer launches).
CPU_BLOCK_ROWS = 2048


def block_rows(device: torch.device, limit: int) -> int:
    """Rows per model call on ``device``, at most ``limit`` (a memory bound)."""
    return max(1, min(limit, CPU_BLOCK_ROWS) if device.type == "cpu" else limit)


class Tanh(nn.Tanh):
    """``nn.Tanh`` (same module, nothing in the state dict) that, at inference on a CPU, computes
    tanh(x) = 2 sigmoid(2x) - 1 in place on a copy.

    Why: this torch's CPU ``tanh`` kernel runs at ~2.5 ns per float32 element on this AVX-512
    machine, while ``sigmoid_`` is vectorised (~0.4 ns); the identity costs ~0.64 ns and differs
    from ``torch.tanh`` by at most ~2e-7 (float32 rounding). tanh was 45 % of the filter's and
    38 % of the GNN's time on a full event (torch.profiler, one thread; benchmarks/README.md).
    With autograd (training) or on CUDA it is ``torch.tanh``, whose kernels are fast there.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x.is_cuda:
            return torch.tanh(x)
        return x.mul(2.0).sigmoid_().mul_(2.0).sub_(1.0)


class MLP(nn.Sequential):
    """An ``nn.Sequential`` (same layers, same parameter names ``0.weight``, ``1.bias``, ...) whose
    inference on a CPU goes through the layers ``block_rows`` rows at a time.

    Without autograd on a CPU tensor longer than ``block_rows``, each block of rows passes through
    every layer before the next block starts, so the activations stay in L2 instead of streaming
    whole [rows, hidden] tensors through memory once per layer; rows are independent, so the
    result is the same. With autograd (training) or on CUDA the whole tensor goes at once.
    TorchScript-able (``block_rows`` is a plain int attribute, not in the state dict).
    """

    def __init__(self, *layers: nn.Module, block_rows: int = CPU_BLOCK_ROWS) -> None:
        super().__init__(*layers)
        self.block_rows = int(block_rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        rows = max(self.block_rows, 1)
        if torch.is_grad_enabled() or x.is_cuda or n <= rows:
            return self._layers(x)
        return torch.cat([self._layers(x[start : start + rows]) for start in range(0, n, rows)])

    def _layers(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x)
        return x


#: the hidden activations :func:`make_mlp` offers (neither has parameters: state dicts match)
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": Tanh, "relu": nn.ReLU}


def make_mlp(
    in_features: int,
    hidden: int,
    n_layers: int,
    out_features: int,
    *,
    layer_norm: bool = True,
    output_activation: bool = False,
    activation: str = "tanh",
) -> MLP:
    """``n_layers`` hidden blocks Linear -> LayerNorm -> tanh, then Linear to ``out_features``.

    tanh with LayerNorm is the Exa.TrkX recipe (REFERENCE.md §2): bounded activations keep sums
    over many neighbours (GNN aggregation) in range. ``output_activation`` adds LayerNorm + tanh
    after the last Linear too (used for hidden representations inside the GNN). The result is an
    :class:`MLP` (an ``nn.Sequential``: state dicts of older models load unchanged).

    ``activation`` "relu" and ``layer_norm`` False give a plain ReLU network: on a CPU, LayerNorm
    costs ~0.7-1.2 ns and tanh ~0.6 ns per float32 element against ~0.1 ns for ReLU, more than the
    matmuls of a 32-wide layer (``benchmarks/README.md``, issue 29). A per-pair classifier with no
    sums over neighbours (the filter) does not need the bounded activations; the output
    activation (``output_activation``) stays tanh, so GNN states and messages stay bounded.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"make_mlp: activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(n_layers):
        layers.append(nn.Linear(width, hidden))
        if layer_norm:
            layers.append(nn.LayerNorm(hidden))
        layers.append(ACTIVATIONS[activation]())
        width = hidden
    layers.append(nn.Linear(width, out_features))
    if output_activation:
        if layer_norm:
            layers.append(nn.LayerNorm(out_features))
        # tanh whatever the hidden activation: bounded states keep message sums in range
        layers.append(Tanh())
    return MLP(*layers)


def count_matmul_flops(mlp: nn.Sequential, n_rows: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of the Linear layers of ``mlp`` applied to ``n_rows`` rows."""
    return sum(2 * n_rows * m.in_features * m.out_features for m in mlp if isinstance(m, nn.Linear))
