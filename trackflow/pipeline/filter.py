"""Filter stage: an MLP scores every candidate edge from its two hits; edges below a cut go."""

from __future__ import annotations

import torch
from torch import nn

from trackflow.pipeline.mlp import make_mlp


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
