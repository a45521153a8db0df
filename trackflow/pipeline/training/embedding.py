"""Metric learning for the embedding stage: hits of one particle close, other hits beyond a margin.

Each step takes one event and a sample of hit pairs:

- positives: truth edges (consecutive hits of a particle, :mod:`.data`) of particles above the
  training pT cut, plus same-particle pairs met among the current embedding's neighbours;
- hard negatives: neighbours of a hit in the current embedding that belong to another particle
  (or are noise) — mined once per epoch and event from a k-nearest-neighbour search, so the loss
  concentrates on the pairs that would otherwise pollute the graph;
- random negatives: random pairs, to keep the whole space spread out.

Loss (hinge on the Euclidean distance d in the embedding space):
``mean(d² over positives) + w_neg · mean(relu(margin - d)² over negatives)``.
Only the hits in the sampled pairs are run through the network with gradients, so a step costs
the same on a 1k-hit or a 100k-hit event.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from trackflow.pipeline.embedding import EmbeddingNet
from trackflow.pipeline.training.data import TruthEvent
from trackflow.pipeline.training.loop import Optimisation


@dataclass
class EmbeddingTrainingConfig:
    """Hyper-parameters of embedding training (distances are in the embedding space, unitless)."""

    hidden: int = 128
    n_layers: int = 4
    out_dim: int = 12
    epochs: int = 6
    steps_per_epoch: int = 150
    events_per_epoch: int = 4  # events mined (and stepped through) in one epoch
    positives_per_step: int = 2048
    hard_negatives_per_step: int = 4096
    random_negatives_per_step: int = 1024
    knn_mining: int = 16  # neighbours per hit searched for hard negatives
    mining_queries: int = 30000  # hits per event whose neighbours are mined (all when fewer)
    margin: float = 0.1  # negatives are pushed beyond this distance
    negative_weight: float = 2.0
    learning_rate: float = 2e-3
    pt_min: float = 0.5  # GeV; truth edges of slower particles are not pulled together

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def embed(model: torch.nn.Module, features: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Embedding [N, D] of all hits, in chunks (bounded memory)."""
    model.eval()
    return torch.cat(
        [model(features[i : i + chunk]) for i in range(0, len(features), chunk)]
        or [torch.zeros(0, getattr(model, "out_dim", 1))]
    )


def mine_hard_negatives(
    event: TruthEvent, embedding: np.ndarray, k: int, n_queries: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(hard negatives [2, H], same-particle neighbour pairs [2, P]) from a kNN search.

    Queries are a random subset of hits; neighbours come from a k-d tree over all hits.
    """
    n = event.n_hits
    queries = rng.choice(n, size=min(n_queries, n), replace=False)
    tree = cKDTree(embedding)
    _, neighbours = tree.query(embedding[queries], k=min(k + 1, n))
    source = np.repeat(queries, neighbours.shape[1])
    target = neighbours.reshape(-1)
    keep = source != target
    pairs = np.stack([source[keep], target[keep]])
    same = event.same_particle(pairs)
    return pairs[:, ~same], pairs[:, same]


def embedding_loss(
    model: torch.nn.Module,
    features: torch.Tensor,
    positives: np.ndarray,
    negatives: np.ndarray,
    margin: float,
    negative_weight: float,
) -> torch.Tensor:
    """Hinge loss on the sampled pairs; only the hits involved go through the network."""
    pairs = np.concatenate([positives, negatives], axis=1)
    hits, inverse = np.unique(pairs.reshape(-1), return_inverse=True)
    out = model(features[torch.from_numpy(hits)])
    idx = torch.from_numpy(inverse.reshape(2, -1))
    d2 = (out[idx[0]] - out[idx[1]]).pow(2).sum(dim=1)
    n_pos = positives.shape[1]
    loss = d2[:n_pos].mean() if n_pos else d2.new_zeros(())
    if negatives.shape[1]:
        d = (d2[n_pos:] + 1e-12).sqrt()
        loss = loss + negative_weight * torch.relu(margin - d).pow(2).mean()
    return loss


def train_embedding(
    events: list[TruthEvent],
    config: EmbeddingTrainingConfig,
    seed: int = 0,
    model: EmbeddingNet | None = None,
) -> tuple[EmbeddingNet, list[float]]:
    """Train an :class:`EmbeddingNet` on ``events``; returns the model and the loss per step."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    if model is None:
        model = EmbeddingNet(
            in_features=events[0].features.shape[1],
            hidden=config.hidden,
            n_layers=config.n_layers,
            out_dim=config.out_dim,
        )
    fit = Optimisation("embedding", model, config.learning_rate, config.epochs * config.steps_per_epoch)
    positives_all = [e.truth_edges_above(config.pt_min) for e in events]
    for epoch in range(config.epochs):
        chosen = rng.permutation(len(events))[: config.events_per_epoch]
        mined = {}
        for i in chosen:
            emb = embed(model, events[i].features).numpy()
            mined[i] = mine_hard_negatives(events[i], emb, config.knn_mining, config.mining_queries, rng)
        model.train()
        order = np.resize(chosen, config.steps_per_epoch)
        rng.shuffle(order)
        for i in order:
            event, (hard, same) = events[i], mined[i]
            truth = positives_all[i]
            pos = _sample(
                truth, config.positives_per_step // 2 if same.shape[1] else config.positives_per_step, rng
            )
            if same.shape[1]:
                pos = np.concatenate([pos, _sample(same, config.positives_per_step // 2, rng)], axis=1)
            neg = _sample(hard, config.hard_negatives_per_step, rng)
            rand = rng.integers(0, event.n_hits, size=(2, config.random_negatives_per_step))
            rand = rand[:, ~event.same_particle(rand) & (rand[0] != rand[1])]
            neg = np.concatenate([neg, rand], axis=1)
            fit.step(embedding_loss(model, event.features, pos, neg, config.margin, config.negative_weight))
        fit.end_epoch(epoch, config.epochs)
    model.eval()
    return model, fit.losses


def _sample(pairs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if pairs.shape[1] <= n:
        return pairs
    return pairs[:, rng.choice(pairs.shape[1], size=n, replace=False)]
