"""Filter training: an MLP on the graph-building edges of the trained embedding.

Batches are balanced (half true edges, half false) so the rare true edges are seen as often as
the many false ones; the working cut is chosen afterwards on validation events, so the shift in
calibration this causes does not matter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from trackflow.pipeline.filter import FilterNet
from trackflow.pipeline.training.edges import EdgeSet, bce_loss, edge_weights
from trackflow.pipeline.training.loop import Optimisation


@dataclass
class FilterTrainingConfig:
    """Hyper-parameters of filter training."""

    hidden: int = 128
    n_layers: int = 3
    use_embedding_distance: bool = True
    # physics pair features (dr, dphi, dz, deta, dphi/dr, z0): needs hit features r, cos_phi,
    # sin_phi, z first; off by default so configs of older models reproduce them
    pair_features: bool = False
    r_scale: float = 1000.0  # mm, the feature scale of r (FeatureConfig.scale["r"])
    z_scale: float = 1000.0  # mm, the feature scale of z
    epochs: int = 5
    steps_per_epoch: int = 150
    batch_size: int = 8192  # edges per step, half true and half false
    learning_rate: float = 2e-3
    pt_min: float = 0.5  # GeV; true edges of slower particles weigh less
    low_pt_weight: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def filter_scores(model: nn.Module, edge_set: EdgeSet, chunk: int = 262144) -> np.ndarray:
    """Sigmoid scores [E] of every edge, in chunks (bounded memory). ``model``: a filter called as
    ``model(features, edges, embedding)`` (a :class:`FilterNet`, trained here or loaded)."""
    model.eval()
    feats, edges = edge_set.event.features, torch.from_numpy(edge_set.edges)
    out = [
        torch.sigmoid(model(feats, edges[:, i : i + chunk], edge_set.embedding))
        for i in range(0, edges.shape[1], chunk)
    ]
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def train_filter(
    edge_sets: list[EdgeSet], config: FilterTrainingConfig, seed: int = 0
) -> tuple[FilterNet, list[float]]:
    """Train a :class:`FilterNet` on labelled candidate edges; returns it and the loss per step."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = FilterNet(
        in_features=edge_sets[0].event.features.shape[1],
        hidden=config.hidden,
        n_layers=config.n_layers,
        use_embedding_distance=config.use_embedding_distance,
        pair_features=config.pair_features,
        r_scale=config.r_scale,
        z_scale=config.z_scale,
    )
    fit = Optimisation("filter", model, config.learning_rate, config.epochs * config.steps_per_epoch)
    true_idx = [np.nonzero(s.y)[0] for s in edge_sets]
    false_idx = [np.nonzero(~s.y)[0] for s in edge_sets]
    half = config.batch_size // 2
    for epoch in range(config.epochs):
        model.train()
        order = np.resize(rng.permutation(len(edge_sets)), config.steps_per_epoch)
        for i in order:
            s = edge_sets[i]
            pick = np.concatenate(
                [
                    rng.choice(true_idx[i], size=min(half, len(true_idx[i])), replace=False),
                    rng.choice(false_idx[i], size=min(half, len(false_idx[i])), replace=False),
                ]
            )
            if not len(pick):
                continue
            edges = torch.from_numpy(s.edges[:, pick])
            y = torch.from_numpy(s.y[pick].astype(np.float32))
            w = torch.from_numpy(edge_weights(s.y[pick], s.pt[pick], config.pt_min, config.low_pt_weight))
            logits = model(s.event.features, edges, s.embedding)
            fit.step(bce_loss(logits, y, w, pos_weight=1.0))
        fit.end_epoch(epoch, config.epochs)
    model.eval()
    return model, fit.losses
