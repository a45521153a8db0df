"""GNN stage: an interaction network scores each edge that survived the filter."""

from __future__ import annotations

import torch
from torch import nn

from trackflow.pipeline.mlp import make_mlp


class InteractionGNN(nn.Module):
    """Interaction network (Battaglia et al.; the acorn/Exa.TrkX variant) -> one logit per edge.

    Encoders map hit features [N, F] to node states x [N, H] and ``[x_src, x_dst]`` to edge states
    e [E, H]. Each of ``n_iterations`` message-passing steps (weights shared across steps):
    edge update ``e += edge_net([e, x_src, x_dst])``; node update
    ``x += node_net([x, sum of messages into the node, sum of messages out of it])``, with
    "into" = edges whose target is the node. The classifier reads ``[e, x_src, x_dst]``.
    Inputs: ``features`` float32 [N, F], ``edges`` int64 [2, E]; output logits float32 [E].
    """

    def __init__(
        self,
        in_features: int = 3,
        hidden: int = 64,
        n_iterations: int = 8,
        n_mlp_layers: int = 2,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.hidden = hidden
        self.n_iterations = n_iterations
        h = hidden
        self.node_encoder = make_mlp(in_features, h, n_mlp_layers, h, output_activation=True)
        self.edge_encoder = make_mlp(2 * h, h, n_mlp_layers, h, output_activation=True)
        self.edge_network = make_mlp(3 * h, h, n_mlp_layers, h, output_activation=True)
        self.node_network = make_mlp(3 * h, h, n_mlp_layers, h, output_activation=True)
        self.edge_classifier = make_mlp(3 * h, h, n_mlp_layers, 1)

    def forward(self, features: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        source, target = edges[0], edges[1]
        x = self.node_encoder(features)
        e = self.edge_encoder(torch.cat([x[source], x[target]], dim=1))
        for _ in range(self.n_iterations):
            e = e + self.edge_network(torch.cat([e, x[source], x[target]], dim=1))
            incoming = torch.zeros_like(x).index_add_(0, target, e)
            outgoing = torch.zeros_like(x).index_add_(0, source, e)
            x = x + self.node_network(torch.cat([x, incoming, outgoing], dim=1))
        return self.edge_classifier(torch.cat([e, x[source], x[target]], dim=1)).squeeze(1)
