"""Tracking metrics: each rule pinned by a small hand-made event, plus generated events checked
against a slow, obviously-correct scorer written from the rule's text."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from trackflow.errors import EventFileError
from trackflow.events import Event, write_event, write_submission
from trackflow.metrics import (
    binned_efficiency,
    binomial_interval,
    edge_metrics,
    hit_particle_ids,
    score_edges,
    score_event,
    score_submission,
    secondary_counts,
    truth_graph,
)

# --------------------------------------------------------------------------------------------
# hand-made events
# --------------------------------------------------------------------------------------------


def make_truth(
    hits_per_particle: dict[int, int], n_noise: int = 0, pt: dict[int, float] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """truth and particles of an event: particle ``p`` has ``hits_per_particle[p]`` hits.

    TrackML-like weights: 1 per hit of particles with >= 4 hits, 0 for noise and shorter
    particles, normalised to sum 1. pT defaults to 2 GeV; hits lie along x from the vertex.
    """
    pt = pt or {}
    particle_id: list[int] = []
    for pid, n in hits_per_particle.items():
        particle_id += [pid] * n
    particle_id += [0] * n_noise
    pid = np.array(particle_id, dtype=np.int64)
    n_hits = len(pid)
    counts = Counter(particle_id)
    weight = np.array([1.0 if p != 0 and counts[p] >= 4 else 0.0 for p in particle_id])
    if weight.sum() > 0:
        weight /= weight.sum()
    order_in_particle = np.zeros(n_hits)
    seen: Counter[int] = Counter()
    for i, p in enumerate(particle_id):
        order_in_particle[i] = seen[p]
        seen[p] += 1
    truth = pd.DataFrame(
        {
            "hit_id": np.arange(1, n_hits + 1, dtype=np.int64),
            "particle_id": pid,
            "tx": 30.0 * (1 + order_in_particle),
            "ty": np.zeros(n_hits),
            "tz": np.zeros(n_hits),
            "tpx": np.ones(n_hits),
            "tpy": np.zeros(n_hits),
            "tpz": np.zeros(n_hits),
            "weight": weight,
        }
    )
    ids = sorted(hits_per_particle)
    particles = pd.DataFrame(
        {
            "particle_id": np.array(ids, dtype=np.int64),
            "vx": 0.0,
            "vy": 0.0,
            "vz": 0.0,
            "px": [pt.get(p, 2.0) for p in ids],
            "py": 0.0,
            "pz": 0.5,
            "q": 1,
            "nhits": [hits_per_particle[p] for p in ids],
        }
    )
    return truth, particles


def make_tracks(truth: pd.DataFrame, spec: list[dict[int, int]]) -> pd.DataFrame:
    """Tracks taking, for each dict ``{particle_id: n}``, n not-yet-used hits of each particle
    (0 = noise). Hits left over become one-hit tracks."""
    unused: dict[int, list[int]] = defaultdict(list)
    for hit_id, pid in zip(truth["hit_id"], truth["particle_id"], strict=True):
        unused[int(pid)].append(int(hit_id))
    track_of: dict[int, int] = {}
    for track_id, composition in enumerate(spec):
        for pid, n in composition.items():
            assert len(unused[pid]) >= n, "test asks for more hits than the particle has"
            for _ in range(n):
                track_of[unused[pid].pop(0)] = track_id
    next_id = len(spec)
    for hit_id in truth["hit_id"]:
        if int(hit_id) not in track_of:
            track_of[int(hit_id)] = next_id
            next_id += 1
    hit_ids = truth["hit_id"].to_numpy()
    return pd.DataFrame({"hit_id": hit_ids, "track_id": [track_of[int(h)] for h in hit_ids]})


def truth_tracks(truth: pd.DataFrame) -> pd.DataFrame:
    """The truth as a submission: one track per particle, each noise hit alone."""
    pid = truth["particle_id"].to_numpy()
    noise_ids = -np.arange(1, len(pid) + 1)
    return pd.DataFrame({"hit_id": truth["hit_id"], "track_id": np.where(pid == 0, noise_ids, pid)})


# --------------------------------------------------------------------------------------------
# truth as the submission, random assignment
# --------------------------------------------------------------------------------------------


def test_truth_as_submission_scores_the_total_weight() -> None:
    truth, particles = make_truth({1: 10, 2: 7, 3: 5, 4: 3, 5: 12}, n_noise=6)
    metrics = score_event(truth_tracks(truth), truth, particles)
    assert metrics.weight_matched == pytest.approx(truth["weight"].sum())
    assert metrics.trackml_score == pytest.approx(1.0)
    assert metrics.efficiency == 1.0
    assert metrics.efficiency_pt05 == 1.0
    assert metrics.fake_rate == 0.0
    assert metrics.duplicate_rate == 0.0
    assert metrics.counts["reconstructable"] == 4  # particle 4 has 3 hits
    assert metrics.counts["noise_hits"] == 6


def test_truth_as_submission_with_unnormalised_weights() -> None:
    truth, particles = make_truth({1: 10, 2: 8}, n_noise=2)
    truth["weight"] = np.where(truth["particle_id"] != 0, 0.25, 0.0)
    metrics = score_event(truth_tracks(truth), truth, particles)
    # the score is normalised by the total weight (as the reference scorer); the matched weight
    # is the total weight itself
    assert metrics.weight_matched == pytest.approx(truth["weight"].sum()) == pytest.approx(4.5)
    assert metrics.trackml_score == pytest.approx(1.0)


def test_random_assignment_scores_about_zero() -> None:
    rng = np.random.default_rng(7)
    sizes = {pid: int(n) for pid, n in enumerate(rng.integers(4, 16, size=1000), start=1)}
    truth, particles = make_truth(sizes, n_noise=1500)
    tracks = pd.DataFrame(
        {"hit_id": truth["hit_id"], "track_id": rng.integers(0, len(sizes), size=len(truth))}
    )
    metrics = score_event(tracks, truth, particles)
    assert metrics.trackml_score < 0.01
    assert metrics.efficiency < 0.01
    assert metrics.fake_rate > 0.99


# --------------------------------------------------------------------------------------------
# each rule at its boundary
# --------------------------------------------------------------------------------------------


def test_track_purity_exactly_half_fails_just_above_passes() -> None:
    truth, particles = make_truth({1: 6, 2: 100})
    # 5 of particle 1 + 5 of particle 2: the majority (a tie, lowest id) holds exactly 50 %
    half = score_event(make_tracks(truth, [{1: 5, 2: 5}]), truth, particles)
    assert half.counts["matched"] == 0
    assert half.tracks.loc[half.tracks["track_id"] == 0, "particle_id"].item() == 1
    assert half.tracks.loc[half.tracks["track_id"] == 0, "fake"].item()
    # 6 of particle 1 + 5 of particle 2: 6/11 > 50 % of the track, 6/6 of the particle
    above = score_event(make_tracks(truth, [{1: 6, 2: 5}]), truth, particles)
    assert above.particles.set_index("particle_id").loc[1, "matched"]
    assert not above.tracks.loc[above.tracks["track_id"] == 0, "fake"].item()
    assert above.weight_matched == pytest.approx(truth.loc[truth.particle_id == 1, "weight"].sum())


def test_particle_fraction_exactly_half_fails_just_above_passes() -> None:
    truth, particles = make_truth({1: 10})
    half = score_event(make_tracks(truth, [{1: 5}]), truth, particles)
    assert half.efficiency == 0.0
    assert half.trackml_score == 0.0
    assert half.fake_rate == 0.0  # a clean piece is not a fake
    above = score_event(make_tracks(truth, [{1: 6}]), truth, particles)
    assert above.efficiency == 1.0
    assert above.trackml_score == pytest.approx(0.6)  # 6 of 10 equal weights


def test_split_track_counts_as_one_match_and_a_duplicate() -> None:
    truth, particles = make_truth({1: 12, 2: 10})
    split = score_event(make_tracks(truth, [{1: 7}, {1: 5}, {2: 10}]), truth, particles)
    assert split.efficiency == 1.0
    assert split.counts["duplicated_particles"] == 1
    assert split.duplicate_rate == 0.5
    assert split.fake_rate == 0.0
    assert split.counts["matched_tracks"] == 2
    # a leftover piece under 5 hits is not a duplicate track
    short = score_event(make_tracks(truth, [{1: 8}, {1: 4}, {2: 10}]), truth, particles)
    assert short.duplicate_rate == 0.0


def test_fake_track() -> None:
    truth, particles = make_truth({1: 10, 2: 10, 3: 10})
    metrics = score_event(make_tracks(truth, [{1: 8}, {2: 8}, {1: 2, 2: 2, 3: 2}, {3: 4}]), truth, particles)
    assert metrics.counts["tracks_min_hits"] == 3  # the 4-hit track is too short to count
    assert metrics.counts["fake_tracks"] == 1
    assert metrics.fake_rate == pytest.approx(1 / 3)
    assert metrics.efficiency == pytest.approx(2 / 3)


def test_noise_hits() -> None:
    truth, particles = make_truth({1: 9, 2: 10}, n_noise=20)
    metrics = score_event(make_tracks(truth, [{1: 9, 0: 3}, {0: 6}, {2: 4, 0: 5}]), truth, particles)
    tracks = metrics.tracks.set_index("track_id")
    # noise inside a good track: still a match, and noise weighs nothing
    assert tracks.loc[0, "matched"] and not tracks.loc[0, "fake"]
    assert metrics.weight_matched == pytest.approx(truth.loc[truth.particle_id == 1, "weight"].sum())
    # a track of noise, and a track mostly noise, are fakes; lone noise hits are not tracks >= 5
    assert tracks.loc[1, "fake"] and tracks.loc[1, "particle_id"] == 0
    assert tracks.loc[2, "fake"]
    assert metrics.counts["tracks_min_hits"] == 3
    assert metrics.counts["particles"] == 2
    assert metrics.efficiency == 0.5


def test_particles_with_fewer_than_4_hits_weigh_nothing() -> None:
    truth, particles = make_truth({1: 3, 2: 10})
    only_short = score_event(make_tracks(truth, [{1: 3}]), truth, particles)
    assert only_short.counts["matched_tracks"] == 1  # found, two-way matched ...
    assert only_short.trackml_score == 0.0  # ... and worth nothing
    assert only_short.counts["reconstructable"] == 1  # nor reconstructable (< 5 hits)
    both = score_event(make_tracks(truth, [{1: 3}, {2: 10}]), truth, particles)
    assert both.trackml_score == pytest.approx(1.0)


def test_pt_and_hit_thresholds() -> None:
    sizes = {1: 8, 2: 8, 3: 8, 4: 8, 5: 4, 6: 5}
    pts = {1: 0.4, 2: 0.7, 3: 1.0, 4: 1.01, 5: 3.0, 6: 3.0}
    truth, particles = make_truth(sizes, pt=pts)
    metrics = score_event(truth_tracks(truth), truth, particles)
    table = metrics.particles.set_index("particle_id")
    assert table["reconstructable"].to_dict() == {1: False, 2: False, 3: False, 4: True, 5: False, 6: True}
    assert table["reconstructable_pt05"].to_dict() == {
        1: False,
        2: True,
        3: True,
        4: True,
        5: False,
        6: True,
    }
    assert metrics.counts["reconstructable"] == 2
    assert metrics.counts["reconstructable_pt05"] == 4
    # thresholds are arguments too
    strict = score_event(truth_tracks(truth), truth, particles, pt_min=2.0, min_hits=4)
    assert strict.counts["reconstructable"] == 2  # particles 5 and 6


def test_hits_missing_from_tracks_are_alone_and_duplicates_refused() -> None:
    truth, particles = make_truth({1: 10})
    tracks = make_tracks(truth, [{1: 10}]).iloc[:4]  # 6 hits given to no track
    metrics = score_event(tracks, truth, particles)
    assert metrics.counts["tracks"] == 7
    assert metrics.efficiency == 0.0
    doubled = pd.concat([tracks, tracks.iloc[:1]])
    with pytest.raises(ValueError, match="more than one track"):
        score_event(doubled, truth, particles)


# --------------------------------------------------------------------------------------------
# generated events against a slow scorer written from the rules
# --------------------------------------------------------------------------------------------


def slow_score(tracks: pd.DataFrame, truth: pd.DataFrame) -> tuple[float, set[int]]:
    """(matched weight, particles two-way matched), one hit at a time."""
    particle_of = dict(zip(truth["hit_id"], truth["particle_id"], strict=True))
    weight_of = dict(zip(truth["hit_id"], truth["weight"], strict=True))
    particle_size = Counter(truth["particle_id"])
    members: dict[int, list[int]] = defaultdict(list)
    for hit_id, track_id in zip(tracks["hit_id"], tracks["track_id"], strict=True):
        members[int(track_id)].append(int(hit_id))
    total, matched = 0.0, set()
    for hits in members.values():
        in_track = Counter(particle_of[h] for h in hits)
        best = max(in_track.values())
        major = min(p for p, n in in_track.items() if n == best)
        if best / len(hits) > 0.5 and best / particle_size[major] > 0.5:
            total += sum(weight_of[h] for h in hits if particle_of[h] == major)
            if major != 0:
                matched.add(major)
    return total, matched


@st.composite
def events_and_tracks(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    sizes = draw(st.lists(st.integers(1, 14), min_size=1, max_size=25))
    n_noise = draw(st.integers(0, 15))
    truth, particles = make_truth(dict(enumerate(sizes, start=1)), n_noise=n_noise)
    truth["weight"] = draw(st.lists(st.floats(0, 1), min_size=len(truth), max_size=len(truth)))
    # start from the truth, then corrupt: reassign some hits to other tracks (merges and splits)
    track_id = truth_tracks(truth)["track_id"].to_numpy().copy()
    n_moves = draw(st.integers(0, len(truth)))
    for _ in range(n_moves):
        hit = draw(st.integers(0, len(truth) - 1))
        track_id[hit] = draw(st.integers(-3, len(sizes) + 3))
    return truth, particles, pd.DataFrame({"hit_id": truth["hit_id"], "track_id": track_id})


@settings(max_examples=150, deadline=None)
@given(events_and_tracks())
def test_generated_events_match_the_slow_scorer(
    case: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
) -> None:
    truth, particles, tracks = case
    metrics = score_event(tracks, truth, particles)
    weight, matched = slow_score(tracks, truth)
    assert metrics.weight_matched == pytest.approx(weight, abs=1e-9)
    assert set(metrics.particles.loc[metrics.particles["matched"], "particle_id"]) == matched
    assert 0.0 <= metrics.weight_matched <= metrics.weight_total + 1e-9


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 20), min_size=1, max_size=40),
    st.integers(0, 30),
)
def test_generated_truth_as_submission_is_perfect(sizes: list[int], n_noise: int) -> None:
    truth, particles = make_truth(dict(enumerate(sizes, start=1)), n_noise=n_noise)
    tracks = truth_tracks(truth).sample(frac=1.0, random_state=len(sizes))  # order must not matter
    metrics = score_event(tracks, truth, particles)
    assert metrics.weight_matched == pytest.approx(truth["weight"].sum())
    if metrics.counts["reconstructable"]:
        assert metrics.efficiency == 1.0
    assert metrics.counts["fake_tracks"] == 0


# --------------------------------------------------------------------------------------------
# efficiency in bins
# --------------------------------------------------------------------------------------------


def test_binomial_intervals_agree_with_scipy() -> None:
    passed, total = np.array([0, 3, 10, 7]), np.array([10, 10, 10, 0])
    low, high = binomial_interval(passed, total, confidence=0.9)
    for k, n, lo, hi in zip(passed[:3], total[:3], low, high, strict=False):
        ci = stats.binomtest(int(k), int(n)).proportion_ci(0.9, method="exact")
        assert (lo, hi) == pytest.approx((ci.low, ci.high))
    assert math.isnan(low[3]) and math.isnan(high[3])
    low, high = binomial_interval(passed[:3], total[:3], confidence=0.9, method="wilson")
    for k, n, lo, hi in zip(passed[:3], total[:3], low, high, strict=True):
        ci = stats.binomtest(int(k), int(n)).proportion_ci(0.9, method="wilson")
        assert (lo, hi) == pytest.approx((ci.low, ci.high))


def test_binned_efficiency_in_pt_and_eta() -> None:
    sizes = dict.fromkeys(range(1, 9), 8)
    pts = {1: 0.6, 2: 0.7, 3: 0.8, 4: 1.5, 5: 1.6, 6: 1.7, 7: 5.0, 8: 0.3}
    truth, particles = make_truth(sizes, pt=pts)
    particles.loc[particles.particle_id == 7, "pz"] = -20.0  # eta of particle 7 about -2.1
    # find particles 1, 4, 5, 7, 8 only
    metrics = score_event(make_tracks(truth, [{1: 8}, {4: 8}, {5: 8}, {7: 8}, {8: 8}]), truth, particles)
    by_pt = binned_efficiency(metrics, "pt", [0.5, 1.0, 2.0, 10.0])
    assert by_pt["reconstructable"].tolist() == [3, 3, 1]
    assert by_pt["matched"].tolist() == [1, 2, 1]
    assert by_pt["efficiency"].tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert (by_pt["error_low"] >= 0).all() and (by_pt["error_high"] >= 0).all()
    assert by_pt["error_high"].iloc[2] == 0.0  # 1 of 1: the upper end is 1
    by_eta = binned_efficiency([metrics, metrics], "eta", [-3.0, 0.0, 3.0])  # pooled, pT > 1 GeV
    assert by_eta["reconstructable"].tolist() == [2, 6]
    assert by_eta["matched"].tolist() == [2, 4]


# --------------------------------------------------------------------------------------------
# edge level
# --------------------------------------------------------------------------------------------


def edge_event() -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """hits (positions 0..6): particle 1 (pT 2) at positions 0, 2, 4 out of order along x,
    particle 2 (pT 0.5) at 1, 3, noise at 5, 6."""
    truth = pd.DataFrame(
        {
            "hit_id": np.array([11, 12, 13, 14, 15, 16, 17]),
            "particle_id": np.array([1, 2, 1, 2, 1, 0, 0]),
            "tx": [90.0, 30.0, 30.0, 60.0, 60.0, 10.0, 20.0],
            "ty": 0.0,
            "tz": 0.0,
            "weight": 1 / 7,
        }
    )
    particles = pd.DataFrame(
        {"particle_id": [1, 2], "vx": 0.0, "vy": 0.0, "vz": 0.0, "px": [2.0, 0.5], "py": 0.0, "pz": 0.0}
    )
    hit_ids = np.array([11, 12, 13, 14, 15, 16, 17])
    return hit_ids, truth, particles


def test_truth_graph_joins_consecutive_hits_of_fast_particles() -> None:
    hit_ids, truth, particles = edge_event()
    graph = truth_graph(hit_ids, truth, particles)
    # particle 1 ordered by distance from the vertex: position 2 (30 mm), 4 (60), 0 (90)
    assert graph.tolist() == [[2, 4], [4, 0]]
    assert truth_graph(hit_ids, truth, particles, pt_min=0.4).shape == (2, 3)
    # hit order given by the caller is respected
    shuffled = hit_ids[::-1]
    assert {tuple(e) for e in truth_graph(shuffled, truth, particles).T} == {(4, 2), (2, 6)}


def test_edge_efficiency_and_purity() -> None:
    hit_ids, truth, particles = edge_event()
    edges = np.array([[2, 0, 0, 1, 5, 6], [4, 4, 2, 3, 6, 1]])
    scores = np.array([0.9, 0.8, 0.1, 0.95, 0.7, 0.3])
    particle_ids = hit_particle_ids(hit_ids, truth)
    assert particle_ids.tolist() == [1, 2, 1, 2, 1, 0, 0]
    built = score_edges(hit_ids, edges, truth, particles)  # graph building: no scores
    assert (built.n_edges, built.n_kept, built.n_true) == (6, 6, 4)
    assert built.purity == pytest.approx(4 / 6)  # noise-noise and noise-particle edges are false
    assert built.efficiency == 1.0  # (2,4) and (4,0) reversed are both there
    filtered = score_edges(hit_ids, edges, truth, particles, edge_scores=scores, cut=0.5)
    assert filtered.n_kept == 4
    assert filtered.n_true_kept == 3
    assert filtered.purity == pytest.approx(3 / 4)
    assert filtered.true_edge_efficiency == pytest.approx(3 / 4)  # (0,2) cut away
    assert filtered.efficiency == 1.0
    tight = edge_metrics(
        edges, particle_ids, scores, cut=0.85, truth_edges=truth_graph(hit_ids, truth, particles)
    )
    assert (tight.n_kept, tight.n_truth_graph_found, tight.efficiency) == (2, 1, 0.5)
    assert json.loads(json.dumps(tight.to_dict()))["efficiency"] == 0.5
    none = edge_metrics(np.zeros((2, 0), dtype=np.int64), particle_ids)
    assert none.to_dict()["purity"] is None


# --------------------------------------------------------------------------------------------
# a submission file against a directory of events
# --------------------------------------------------------------------------------------------


def file_event(event_id: int, sizes: dict[int, int], n_noise: int) -> Event:
    truth, particles = make_truth(sizes, n_noise=n_noise)
    n = len(truth)
    hits = pd.DataFrame(
        {
            "hit_id": truth["hit_id"],
            "x": truth["tx"].astype(np.float32),
            "y": np.float32(1.0),
            "z": np.float32(2.0),
            "volume_id": np.full(n, 8, dtype=np.int32),
            "layer_id": np.full(n, 2, dtype=np.int32),
            "module_id": np.arange(1, n + 1, dtype=np.int32),
        }
    )
    return Event(event_id, hits, truth=truth, particles=particles)


def test_score_submission_averages_scores_and_pools_counts(tmp_path: Path) -> None:
    events = [file_event(1, {1: 10, 2: 8}, 4), file_event(2, {1: 6, 2: 6, 3: 12}, 2)]
    for event in events:
        write_event(event, tmp_path / "events")
    frames = []
    # event 1: perfect; event 2: particle 3 missing (split 6 + 6: no two-way match)
    frames.append(truth_tracks(events[0].truth).assign(event_id=1))
    second = make_tracks(events[1].truth, [{1: 6}, {2: 6}, {3: 6}, {3: 6}])
    frames.append(second.assign(event_id=2))
    submission = write_submission(tmp_path / "submission.csv", frames)
    result = score_submission(tmp_path / "events", submission)
    assert json.loads(json.dumps(result)) == result  # one JSON object, no NaN
    assert result["counts"]["events"] == 2
    assert result["counts"]["reconstructable"] == 5
    assert result["counts"]["matched"] == 4
    assert result["efficiency"] == pytest.approx(4 / 5)  # pooled
    assert result["trackml_score"] == pytest.approx((1.0 + 0.5) / 2)  # mean of the event scores
    assert [e["event_id"] for e in result["events"]] == [1, 2]


def test_score_submission_errors_name_the_file(tmp_path: Path) -> None:
    event = file_event(1, {1: 10}, 2)
    write_event(event, tmp_path / "events")
    tracks = truth_tracks(event.truth).assign(event_id=1)
    # a hit missing from the submission
    short = write_submission(tmp_path / "short.csv", [tracks.iloc[1:]])
    with pytest.raises(EventFileError, match=r"short\.csv: event 1: tracks cover 11 hits") as error:
        score_submission(tmp_path / "events", short)
    assert "\n" not in str(error.value)
    # an event the directory does not have
    other = write_submission(tmp_path / "other.csv", [tracks.assign(event_id=5)])
    with pytest.raises(EventFileError, match="no files for event id"):
        score_submission(tmp_path / "events", other)
    # no truth: cannot be scored
    write_event(Event(3, event.hits, particles=event.particles), tmp_path / "events")
    third = write_submission(tmp_path / "third.csv", [tracks.assign(event_id=3)])
    with pytest.raises(EventFileError, match=r"event000000003-truth\.csv\.gz: missing truth file"):
        score_submission(tmp_path / "events", third)


def test_edges_as_torch_tensors() -> None:
    """HitGraph holds torch tensors: they are accepted as they are."""
    import torch

    hit_ids, truth, particles = edge_event()
    edges = np.array([[2, 0, 0, 1, 5, 6], [4, 4, 2, 3, 6, 1]])
    scores = np.array([0.9, 0.8, 0.1, 0.95, 0.7, 0.3], dtype=np.float32)
    from_numpy = score_edges(hit_ids, edges, truth, particles, edge_scores=scores, cut=0.5)
    from_torch = score_edges(
        hit_ids, torch.from_numpy(edges), truth, particles, edge_scores=torch.from_numpy(scores), cut=0.5
    )
    assert from_torch == from_numpy


def test_particles_without_hits_and_an_empty_event() -> None:
    truth, particles = make_truth({1: 6})
    extra = particles.assign(particle_id=99)  # produced, but left no hit
    metrics = score_event(truth_tracks(truth), truth, pd.concat([particles, extra]))
    table = metrics.particles.set_index("particle_id")
    assert table.loc[99, "n_hits"] == 0 and not table.loc[99, "reconstructable"]
    assert metrics.efficiency == 1.0
    empty = score_event(truth_tracks(truth.iloc[:0]), truth.iloc[:0], particles)
    assert empty.to_dict()["trackml_score"] is None
    assert empty.to_dict()["efficiency"] is None
    assert empty.counts["tracks"] == 0


def test_track_rates_are_ratios_of_the_counts_and_undefined_without_a_denominator() -> None:
    from trackflow import metrics
    from trackflow.files import json_safe

    rates = metrics.track_rates({name: 0 for pair in metrics.TRACK_RATES.values() for name in pair})
    assert set(rates) == set(metrics.TRACK_RATES)
    assert all(math.isnan(value) for value in rates.values())
    assert all(value is None for value in json_safe(rates).values())  # written as null, never NaN
    numerator, denominator = metrics.TRACK_RATES["efficiency"]
    assert metrics.track_rates({numerator: 3, denominator: 4})["efficiency"] == 0.75


def test_secondaries_are_counted_apart_from_primaries() -> None:
    # three particles of 6 hits, pT 2 GeV: a primary found, a secondary found, a secondary split
    particles = pd.DataFrame(
        {
            "particle_id": [1, 2, 3],
            "vx": [0.01, 12.0, 0.0],
            "vy": [0.0, 5.0, -40.0],
            "vz": [0.0, 0.0, 0.0],
            "px": [2.0, 2.0, 0.0],
            "py": [0.0, 0.0, 2.0],
            "pz": [0.5, 0.5, 0.5],
        }
    )
    pid = [1] * 6 + [2] * 6 + [3] * 6
    truth = pd.DataFrame({"hit_id": range(1, 19), "particle_id": pid, "weight": 1.0 / 18})
    tracks = pd.DataFrame({"hit_id": range(1, 19), "track_id": [1] * 6 + [2] * 6 + [3, 3, 3, 4, 4, 4]})
    scored = score_event(tracks, truth, particles)
    counts = secondary_counts(scored, particles)
    assert counts == {"reconstructable_secondary": 2, "matched_secondary": 1}
