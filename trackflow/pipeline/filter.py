"""Filter stage: an MLP scores every candidate edge from its two hits; edges below a cut go."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import trackflow.config
from trackflow.errors import ConfigError
from trackflow.pipeline.graph import HitGraph
from trackflow.pipeline.mlp import block_rows, make_mlp


class FilterNet(nn.Module):
    """Per-edge logit from the features of the two hits of the edge.

    Inputs: ``features`` float32 [N, F], ``edges`` int64 [2, E] (source, target), and, when
    ``use_embedding_distance`` is set, ``embedding`` float32 [N, D]. The MLP sees
    ``[x_source, x_target]`` (2F columns), plus the Euclidean distance of the two hits in the
    embedding space (1 column) when enabled. Output: logits float32 [E].
    """

    def __init__(
        self,
        in_features: int = 3,
        hidden: int = 256,
        n_layers: int = 4,
        use_embedding_distance: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.use_embedding_distance = use_embedding_distance
        self.network = make_mlp(2 * in_features + int(use_embedding_distance), hidden, n_layers, 1)

    def forward(
        self,
        features: torch.Tensor,
        edges: torch.Tensor,
        embedding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        source, target = edges[0], edges[1]
        inputs = [features[source], features[target]]
        if self.use_embedding_distance:
            if embedding is None:
                raise ValueError("FilterNet(use_embedding_distance=True) needs the embedding")
            diff = embedding[source] - embedding[target]
            inputs.append(diff.pow(2).sum(dim=1, keepdim=True).sqrt())
        return self.network(torch.cat(inputs, dim=1)).squeeze(1)


def _cfg(key: str, default: Any) -> Any:
    return trackflow.config.get(f"pipeline.filter.{key}", default)


@dataclass
class FilterConfig:
    """``cut``: keep edges with sigmoid(logit) > cut; ``chunk_size``: edges scored at once, which
    bounds memory on 100k-hit events (activations are chunk_size x hidden floats per layer)."""

    cut: float = field(default_factory=lambda: float(_cfg("cut", 0.2)))
    chunk_size: int = field(default_factory=lambda: int(_cfg("chunk_size", 200_000)))

    def __post_init__(self) -> None:
        if not 0.0 <= self.cut < 1.0:
            raise ConfigError(f"pipeline.filter.cut: must be in [0, 1), got {self.cut}")
        if self.chunk_size < 1:
            raise ConfigError(f"pipeline.filter.chunk_size: must be >= 1, got {self.chunk_size}")


def apply_cut(edges: torch.Tensor, logits: torch.Tensor, cut: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges [2, E'] and their scores [E'] (sigmoid of ``logits``) with score > ``cut``."""
    scores = torch.sigmoid(logits)
    keep = scores > cut
    return edges[:, keep], scores[keep]


class EdgeFilter:
    """Stage ``"filter"``: score graph-building edges with a FilterNet (or a TorchScript model
    with the same call), in chunks, and keep those above the cut.

    Sets ``graph.edges`` to the kept edges and ``graph.edge_scores`` to their filter scores.
    """

    name = "filter"

    def __init__(self, model: nn.Module, config: FilterConfig | None = None) -> None:
        self.model = model.eval()
        self.config = config or FilterConfig()
        self.uses_embedding = bool(getattr(model, "use_embedding_distance", False))

    def logits(self, graph: HitGraph) -> torch.Tensor:
        """Filter logits [E] for every edge of ``graph``, computed chunk by chunk."""
        assert graph.edges is not None
        chunks = []
        rows = block_rows(graph.device, self.config.chunk_size)
        with torch.inference_mode():
            for start in range(0, graph.n_edges, rows):
                edges = graph.edges[:, start : start + rows]
                if self.uses_embedding:
                    chunks.append(self.model(graph.features, edges, graph.embedding))
                else:
                    chunks.append(self.model(graph.features, edges))
        if not chunks:
            return torch.zeros(0, dtype=torch.float32, device=graph.device)
        return torch.cat(chunks)

    def __call__(self, graph: HitGraph) -> HitGraph:
        if graph.edges is None:
            raise ValueError("filter needs the graph_building stage to have run")
        graph.edges, graph.edge_scores = apply_cut(graph.edges, self.logits(graph), self.config.cut)
        graph.counts["edges_filter"] = graph.n_edges
        return graph

    def __repr__(self) -> str:
        c = self.config
        return f"EdgeFilter({type(self.model).__name__}, cut={c.cut}, chunk_size={c.chunk_size})"
