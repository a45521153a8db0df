"""Labelling: every hit gets a track label; connected components, CC-and-extend and CC-and-walk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trackflow.errors import ConfigError
from trackflow.pipeline import HitGraph, Labelling, LabellingConfig
from trackflow.pipeline.labelling import (
    connected_component_labels,
    extended_component_labels,
    join_tracks,
    track_labels,
    walkthrough_labels,
)
from trackflow.pipeline.threads import set_threads


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> None:
    """One thread per pool, as a worker runs (and no OpenMP spinning on a shared machine)."""
    set_threads(1)


def groups(labels: np.ndarray) -> set[frozenset[int]]:
    return {frozenset(np.nonzero(labels == label)[0].tolist()) for label in np.unique(labels)}


def test_cc_groups_edges_above_the_cut_and_isolates_the_rest() -> None:
    edges = np.array([[1, 2, 4, 6], [0, 1, 3, 5]])
    scores = np.array([0.9, 0.8, 0.3, 0.95])
    labels = connected_component_labels(8, edges, scores, cut=0.5)
    assert labels.dtype == np.int64 and labels.shape == (8,)
    assert groups(labels) == {
        frozenset({0, 1, 2}),
        frozenset({3}),
        frozenset({4}),
        frozenset({5, 6}),
        frozenset({7}),
    }
    assert set(labels.tolist()) == set(range(5))  # labels 0..T-1


def test_cc_with_no_edges_gives_one_track_per_hit() -> None:
    labels = connected_component_labels(4, np.zeros((2, 0), dtype=np.int64), np.zeros(0), 0.5)
    assert sorted(labels.tolist()) == [0, 1, 2, 3]


def test_cc_extend_gives_lone_hits_back_to_the_track_their_best_loose_edge_reaches() -> None:
    # tight tracks A = 0-1-2-3 and B = 4-5-6-7 (scores 0.95); hit 8 has loose edges to both (0.6
    # to hit 3, 0.4 to hit 7): it joins A; hit 9 has only a 0.2 edge (below extend_cut): alone;
    # hits 10-11, a tight pair (a fragment of 2), have loose edges into B: both join it; hits 12
    # and 13 are lone hits joined only to each other: a fragment never joins one of its size;
    # hit 14's loose edge reaches hit 8, a lone hit until round 1 moves it into A: round 2 follows
    edges = np.array(
        [[1, 2, 3, 5, 6, 7, 8, 8, 9, 11, 10, 11, 12, 14], [0, 1, 2, 4, 5, 6, 3, 7, 0, 10, 6, 7, 13, 8]]
    )
    scores = np.array([0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.6, 0.4, 0.2, 0.95, 0.5, 0.45, 0.7, 0.8])
    labels = extended_component_labels(15, edges, scores, cut=0.9, extend_cut=0.3, max_hits=2, rounds=3)
    assert groups(labels) == {
        frozenset({0, 1, 2, 3, 8, 14}),
        frozenset({4, 5, 6, 7, 10, 11}),
        frozenset({9}),
        frozenset({12}),
        frozenset({13}),
    }
    assert set(labels.tolist()) == set(range(5))
    one = extended_component_labels(15, edges, scores, cut=0.9, extend_cut=0.3, max_hits=2, rounds=1)
    assert frozenset({14}) in groups(one) and frozenset({0, 1, 2, 3, 8}) in groups(one)
    # fragments above max_hits stay as they are; with the loose cut at the tight one it is CC
    big = extended_component_labels(15, edges, scores, cut=0.9, extend_cut=0.3, max_hits=1, rounds=3)
    assert frozenset({10, 11}) in groups(big)
    assert groups(extended_component_labels(15, edges, scores, 0.9, 0.9)) == groups(
        connected_component_labels(15, edges, scores, 0.9)
    )


def test_cc_extend_joins_fragments_only_to_tracks_of_min_track_hits() -> None:
    # a 4-hit track 0-1-2-3 and a 2-hit fragment 4-5 (tight edges); lone hit 6 has loose edges to
    # both, the better one to the fragment; lone hit 7 a loose edge to the 4-hit track
    edges = np.array([[1, 2, 3, 5, 6, 6, 7], [0, 1, 2, 4, 4, 0, 3]])
    scores = np.array([0.95, 0.95, 0.95, 0.95, 0.8, 0.5, 0.6])
    free = extended_component_labels(8, edges, scores, cut=0.9, extend_cut=0.3, max_hits=2, rounds=1)
    assert frozenset({4, 5, 6}) in groups(free)  # two fragments pair up into a new 3-hit track
    # with min_track 4 a fragment joins only a track that already has 4 hits: hit 6 follows its
    # best edge into a track that qualifies, and the 2-hit fragment stays as it is
    strict = extended_component_labels(8, edges, scores, 0.9, 0.3, max_hits=2, rounds=1, min_track=4)
    assert groups(strict) == {frozenset({0, 1, 2, 3, 6, 7}), frozenset({4, 5})}
    config = LabellingConfig(
        method="cc_extend", cut=0.9, extend_cut=0.3, extend_max_hits=2, extend_rounds=1, extend_min_track=4
    )
    assert groups(track_labels(8, edges, scores, np.zeros(8), config)) == groups(strict)
    with pytest.raises(ConfigError, match="extend_min_track"):
        LabellingConfig(method="cc_extend", extend_min_track=0)


def test_tracks_join_end_to_end_only_over_their_mutually_best_loose_edge() -> None:
    # hits at radii 0..11: inner track A = 0-1-2 (r 0-2), outer track B = 3-4-5 (r 3-5), track C =
    # 6-7-8 (r 6-8) and track D = 9-10-11 (r 1.5-3.5), crossing A and B in r
    r = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 1.5, 2.5, 3.5])
    tight = [[0, 1], [1, 2], [3, 4], [4, 5], [6, 7], [7, 8], [9, 10], [10, 11]]
    loose = [
        [2, 3],  # A's outermost -> B's innermost: 0.5
        [5, 6],  # B's outermost -> C's innermost: 0.3 (B prefers A)
        [1, 10],  # A's middle hit -> D: never end to end
    ]
    edges = np.array(tight + loose).T
    scores = np.array([0.95] * len(tight) + [0.5, 0.3, 0.6])
    labels = extended_component_labels(12, edges, scores, cut=0.9, extend_cut=0.2, max_hits=2, rounds=1)
    joined = join_tracks(labels, edges, scores, r, low=0.2, high=0.9, min_hits=3)
    assert groups(joined) == {
        frozenset({0, 1, 2, 3, 4, 5}),
        frozenset({6, 7, 8}),  # C named B, but B named A: no merge
        frozenset({9, 10, 11}),
    }
    # tracks shorter than min_hits, or an edge below the loose cut, join nothing
    assert groups(join_tracks(labels, edges, scores, r, low=0.2, high=0.9, min_hits=4)) == groups(labels)
    assert groups(join_tracks(labels, edges, scores, r, low=0.55, high=0.9, min_hits=3)) == groups(labels)
    # through the stage's config
    config = LabellingConfig(
        method="cc_extend", cut=0.9, extend_cut=0.2, extend_max_hits=2, extend_rounds=1, join_min_hits=3
    )
    assert groups(track_labels(12, edges, scores, r, config)) == groups(joined)
    with pytest.raises(ConfigError, match="join_min_hits"):
        LabellingConfig(method="cc_extend", join_min_hits=-1)


def test_walkthrough_keeps_simple_paths_and_walks_branches() -> None:
    # hits 0-1-2-3 a clean path (any loose score); hits 4..9: a Y from 4 via 5 to 6-7 (good) and
    # 8-9 (a weak branch); r grows with the hit index inside each group
    r = np.array([1, 2, 3, 4, 1, 2, 3, 4, 3, 4], dtype=np.float32)
    edges = np.array([[1, 2, 3, 5, 6, 7, 8, 9], [0, 1, 2, 4, 5, 6, 5, 8]])
    scores = np.array([0.05, 0.3, 0.2, 0.9, 0.95, 0.9, 0.7, 0.65])
    labels = walkthrough_labels(10, edges, scores, r, loose_cut=0.01, walk_cut=0.6, min_hits=3)
    found = groups(labels)
    assert frozenset({0, 1, 2, 3}) in found  # a simple path is a track as it is
    assert frozenset({4, 5, 6, 7}) in found  # the walk follows the best edge at the branch
    assert frozenset({8, 9}) not in found  # too short to be a track: its hits stand alone
    assert frozenset({8}) in found and frozenset({9}) in found
    assert len(labels) == 10 and set(labels.tolist()) == set(range(len(found)))


def test_walkthrough_ignores_edges_below_the_loose_cut() -> None:
    r = np.arange(4, dtype=np.float32)
    edges = np.array([[1, 2, 3], [0, 1, 2]])
    labels = walkthrough_labels(4, edges, np.array([0.9, 0.005, 0.9]), r, 0.01, 0.6, 2)
    assert groups(labels) == {frozenset({0, 1}), frozenset({2, 3})}


@pytest.mark.parametrize("method", ["cc", "cc_extend", "walkthrough"])
def test_stage_labels_every_hit(method: str) -> None:
    rng = np.random.default_rng(0)
    graph = HitGraph.from_features(torch.from_numpy(rng.random((200, 3), dtype=np.float32)))
    graph.edges = torch.from_numpy(np.sort(rng.integers(0, 200, (2, 400)), axis=0)[::-1].copy())
    graph.edge_scores = torch.from_numpy(rng.random(400, dtype=np.float32))
    graph = Labelling(LabellingConfig(method=method))(graph)
    assert graph.track_labels.shape == (200,)
    assert graph.counts["tracks"] == len(np.unique(graph.track_labels))
    assert method in repr(Labelling(LabellingConfig(method=method)))


def test_bad_method_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="method"):
        LabellingConfig(method="dbscan")
    with pytest.raises(ConfigError, match="extend_cut"):
        LabellingConfig(method="cc_extend", cut=0.5, extend_cut=0.7)
    with pytest.raises(ConfigError, match="extend_max_hits"):
        LabellingConfig(method="cc_extend", extend_max_hits=0)
