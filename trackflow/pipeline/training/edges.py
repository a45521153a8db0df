"""Edge-classifier training shared by the filter and the GNN: labels, weighting, cut choice.

An edge is *true* when both hits belong to the same particle (noise never), and a *target* when
its hits are also consecutive along the particle (a truth edge,
:func:`trackflow.pipeline.training.data.truth_edges`): the edges a track is built from and the
edge efficiency is scored on. Edges of particles below the training pT cut are weighted down, so
the models concentrate on the particles the targets are set for while still learning to join
slower ones. The filter learns "same particle"; the GNN may learn the targets alone
(:func:`target_weights`: true edges that skip a hit are neither rewarded nor punished).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trackflow.pipeline.training.data import TruthEvent


@dataclass
class EdgeSet:
    """Candidate edges of one event with truth: ``edges`` int64 [2, E], ``y`` bool [E],
    ``pt`` float32 [E] (GeV of the edge's particle when true, else 0); ``score`` float32 [E]: the
    filter's score of each edge once it has one (the GNN may read it); ``agreement`` float32
    [E, 4]: each edge's triplet agreement with its neighbours, when the GNN reads it
    (:meth:`trackflow.pipeline.triplets.TripletScales.agreement`)."""

    event: TruthEvent
    edges: np.ndarray
    y: np.ndarray
    pt: np.ndarray
    embedding: torch.Tensor | None = None
    score: np.ndarray | None = None
    target: np.ndarray | None = None  # bool [E]: consecutive hits of one particle (a truth edge)
    agreement: np.ndarray | None = None

    def vertex_r(self) -> np.ndarray:
        """float32 [E]: production radius (mm) of a true edge's particle, 0 for fakes and when
        the event does not know it."""
        if self.event.vertex_r is None:
            return np.zeros(self.edges.shape[1], np.float32)
        return np.where(self.y, self.event.vertex_r[self.edges[0]], 0.0).astype(np.float32)

    @classmethod
    def label(cls, event: TruthEvent, edges: np.ndarray, embedding: torch.Tensor | None = None) -> EdgeSet:
        y = event.same_particle(edges)
        pt = np.where(y, event.pt[edges[0]], 0.0).astype(np.float32)
        keys, truth = undirected_keys(edges, event.n_hits), undirected_keys(event.truth_edges, event.n_hits)
        target = np.isin(keys, truth)
        return cls(event, edges, y, pt, embedding, target=target)

    def subset(self, keep: np.ndarray) -> EdgeSet:
        score = None if self.score is None else self.score[keep]
        target = None if self.target is None else self.target[keep]
        agreement = None if self.agreement is None else self.agreement[keep]
        edges, y, pt = self.edges[:, keep], self.y[keep], self.pt[keep]
        return EdgeSet(self.event, edges, y, pt, self.embedding, score, target, agreement)

    def edge_inputs(self) -> np.ndarray | None:
        """What a GNN reads per edge besides the hits, as the GNN stage gives it: the filter's
        scores [E], with the triplet agreement [E, 5] when the set has it (else None)."""
        if self.score is None or self.agreement is None:
            return self.score
        return np.concatenate([self.score[:, None], self.agreement], axis=1).astype(np.float32)


def edge_weights(y: np.ndarray, pt: np.ndarray, pt_min: float, low_pt_weight: float = 0.3) -> np.ndarray:
    """Per-edge loss weight: 1, except true edges of particles below ``pt_min`` (GeV)."""
    return np.where(y & (pt < pt_min), low_pt_weight, 1.0).astype(np.float32)


def target_weights(
    y: np.ndarray,
    target: np.ndarray,
    pt: np.ndarray,
    pt_min: float,
    low_pt_weight: float,
    fake_weight: float,
    displaced: np.ndarray | None = None,
    displaced_weight: float = 1.0,
) -> np.ndarray:
    """Per-edge loss weight when the label is ``target``: targets 1 (``low_pt_weight`` below
    ``pt_min`` GeV), true edges that are not targets 0 (they skip a hit: not what a track is
    built from, but not wrong either), edges of two particles or noise ``fake_weight``.
    ``displaced`` bool [E]: targets of secondaries, whose weight is multiplied by
    ``displaced_weight`` (they are a few % of the targets but most of what the GNN misses)."""
    target_weight = np.where(pt < pt_min, low_pt_weight, 1.0)
    if displaced is not None:
        target_weight = np.where(displaced, target_weight * displaced_weight, target_weight)
    weight = np.where(target, target_weight, np.where(y, 0.0, fake_weight))
    return weight.astype(np.float32)


def truth_edge_keys(event: TruthEvent, pt_min: float) -> np.ndarray:
    """Undirected keys (min*N + max) of the truth edges above ``pt_min`` (GeV)."""
    return undirected_keys(event.truth_edges_above(pt_min), event.n_hits)


def undirected_keys(edges: np.ndarray, n: int) -> np.ndarray:
    a, b = np.minimum(edges[0], edges[1]).astype(np.int64), np.maximum(edges[0], edges[1]).astype(np.int64)
    return a * n + b


def found_truth(event: TruthEvent, edges: np.ndarray, pt_min: float) -> tuple[int, int]:
    """(truth edges above ``pt_min`` present in ``edges``, all such truth edges)."""
    truth = np.unique(truth_edge_keys(event, pt_min))
    return int(np.isin(truth, undirected_keys(edges, event.n_hits)).sum()), len(truth)


def choose_cut_for_efficiency(scores: list[np.ndarray], is_truth: list[np.ndarray], target: float) -> float:
    """Highest score cut keeping at least ``target`` of the flagged (truth) edges, over all events."""
    s = np.concatenate([sc[t] for sc, t in zip(scores, is_truth, strict=True)]) if scores else np.zeros(0)
    if not len(s):
        return 0.5
    # keep edges with score > cut: the cut is the (1 - target) quantile, nudged below it
    cut = float(np.quantile(s, 1.0 - target, method="lower"))
    return max(0.0, np.nextafter(cut, -np.inf))


def choose_cut_for_purity(scores: np.ndarray, y: np.ndarray, target: float) -> float:
    """Lowest cut whose kept edges (score > cut) are at least ``target`` true; 0.5 if none."""
    order = np.argsort(-scores)
    s, t = scores[order], y[order].astype(np.float64)
    purity = np.cumsum(t) / np.arange(1, len(t) + 1)
    ok = np.nonzero(purity >= target)[0]
    if not len(ok):
        return 0.5
    i = ok[-1]  # keep the top i+1 edges
    return float(np.nextafter(s[i], -np.inf)) if i + 1 < len(s) else 0.0


def bce_loss(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, pos_weight: float) -> torch.Tensor:
    return torch.nn.functional.binary_cross_entropy_with_logits(
        logits, y, weight=weight, pos_weight=torch.tensor(pos_weight)
    )
