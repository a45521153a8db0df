"""Embedding stage: an MLP maps each hit's features to a point in a D-dimensional space.

Trained (metric learning) so that hits of one particle lie close together; graph building then
joins hits closer than a radius in that space.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trackflow.pipeline.graph import HitGraph
from trackflow.pipeline.mlp import block_rows, make_mlp


class EmbeddingNet(nn.Module):
    """Hit features [N, in_features] -> embedding [N, out_dim] (float32).

    Hidden blocks: Linear -> LayerNorm -> tanh. With ``normalise=True`` (the default) the output is
    L2-normalised onto the unit sphere, so distances lie in [0, 2] and one graph-building radius
    means the same thing for every trained model; ``normalise=False`` gives the raw output (as the
    Exa.TrkX service's embedding, whose radius was 1.6).
    """

    def __init__(
        self,
        in_features: int = 3,
        hidden: int = 256,
        n_layers: int = 4,
        out_dim: int = 8,
        normalise: bool = True,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_dim = out_dim
        self.normalise = normalise
        self.network = make_mlp(in_features, hidden, n_layers, out_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.network(features)
        if self.normalise:
            out = F.normalize(out, p=2.0, dim=1)
        return out


class Embedding:
    """Stage ``"embedding"``: ``graph.features`` [N, F] -> ``graph.embedding`` [N, D].

    ``model`` is an EmbeddingNet or any TorchScript model with the same call (``embed.pt`` of
    Exa.TrkX / ACTS). None: no embedding (``graph.embedding`` stays None), for models whose
    graph building reads the detector's layer map instead.
    """

    name = "embedding"

    def __init__(self, model: nn.Module | None) -> None:
        self.model = None if model is None else model.eval()

    def __call__(self, graph: HitGraph) -> HitGraph:
        if self.model is None:
            return graph
        rows = block_rows(graph.device, graph.n_hits)
        with torch.inference_mode():
            blocks = [
                self.model(graph.features[start : start + rows]) for start in range(0, graph.n_hits, rows)
            ]
        graph.embedding = torch.cat(blocks) if blocks else self.model(graph.features)
        return graph

    def __repr__(self) -> str:
        return f"Embedding({type(self.model).__name__ if self.model is not None else None})"
