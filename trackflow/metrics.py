"""Tracking metrics against truth: edge level (graph building, filter, GNN) and track level.

Edge level
    Edges are ``[2, E]`` integer arrays of **positions in the event's hit order** (row numbers of
    ``hit_ids``, as in :class:`trackflow.pipeline.HitGraph`), never hit ids. A *true edge* joins two
    hits of the same non-noise particle. The *truth graph* joins consecutive hits of each particle
    with pT > 1 GeV, the hits ordered by their distance from the particle's production vertex; the
    graph-building efficiency is the fraction of truth-graph edges present among the kept edges.

Track level (one event: :func:`score_event`; a submission: :func:`score_submission`)
    Each track is given its *majority particle*: the particle with most of the track's hits (ties:
    the lowest particle_id, as the TrackML reference scorer). With ``n_common`` hits in common:

    - *two-way match*: ``n_common > 50 %`` of the track's hits **and** ``> 50 %`` of the particle's
      hits (strictly: exactly 50 % fails). At most one track can two-way match a particle.
    - *TrackML score*: sum of the truth weights of the common hits of two-way matched tracks,
      divided by the event's total weight (1 for TrackML files). As the reference scorer does,
      the particle's hit count includes all its hits in the truth, noise counts as particle 0 (with
      weight 0 in TrackML files), and the weights are taken from the truth as given (TrackML gives
      noise and particles with < 4 hits weight 0).
    - *reconstructable particle*: non-noise, pT > 1 GeV (or > 0.5 GeV for ``efficiency_pt05``) and
      at least 5 hits in the truth. *Efficiency* = reconstructable particles with a two-way match ÷
      reconstructable particles.
    - *fake rate* = tracks with ≥ 5 hits whose majority particle holds ≤ 50 % of their hits (or is
      noise) ÷ tracks with ≥ 5 hits.
    - *duplicate rate* = matched reconstructable (pT > 1 GeV) particles that are the majority
      particle (> 50 % of the hits) of more than one track with ≥ 5 hits ÷ matched reconstructable
      particles. A particle split into two clean pieces of ≥ 5 hits is one match and one duplicate,
      not a fake.

Averaging over events (:func:`score_submission`): the TrackML score is the mean of the per-event
scores, as in the challenge; efficiencies and rates pool the counts of all events.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from trackflow import config
from trackflow.errors import EventFileError

if TYPE_CHECKING:
    from trackflow.events.event import Event

#: transverse-momentum threshold (GeV) of reconstructable particles and of the truth graph
PT_MIN = 1.0
#: the looser threshold (GeV) reported as ``efficiency_pt05``
PT_MIN_LOW = 0.5
#: fewest hits of a reconstructable particle, and of a track counted in the fake/duplicate rates
MIN_HITS = 5
#: mm: a particle produced farther than this from the beam line is a secondary (a decay, a
#: conversion, a hadronic interaction): ~7.5 % of the pT > 1 GeV particles of a full event, and
#: where both the pipeline (edge features that assume the beam line) and the CKF (seeds within
#: 1 mm of it) lose most
SECONDARY_MIN_R = 1.0
#: one standard deviation, the usual size of an error bar
ONE_SIGMA = 0.6826894921370859


def _setting(key: str, default: Any, value: Any = None) -> Any:
    """An explicit argument, else the ``metrics.<key>`` setting, else the built-in default."""
    return value if value is not None else config.get(f"metrics.{key}", default)


def _numpy(values: Any) -> np.ndarray:
    """A numpy view of a numpy array, list or (CPU or GPU) torch tensor, without importing torch."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


#: the track-level rates: name -> (numerator, denominator), both keys of :attr:`TrackMetrics.counts`
TRACK_RATES: dict[str, tuple[str, str]] = {
    "efficiency": ("matched", "reconstructable"),
    "efficiency_pt05": ("matched_pt05", "reconstructable_pt05"),
    "fake_rate": ("fake_tracks", "tracks_min_hits"),
    "duplicate_rate": ("duplicated_particles", "matched"),
}


def track_rates(counts: Mapping[str, float]) -> dict[str, float]:
    """Efficiency, efficiency_pt05, fake_rate and duplicate_rate of ``counts`` (one event's
    :attr:`TrackMetrics.counts`, or several events' summed: pooled rates), as :data:`TRACK_RATES`
    defines them; NaN where the denominator is 0 (or absent): a rate of nothing is undefined."""
    return {
        name: _ratio(counts.get(numerator, 0), counts.get(denominator, 0))
        for name, (numerator, denominator) in TRACK_RATES.items()
    }


def pooled_counts(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Several events' :attr:`TrackMetrics.counts` summed key by key: :func:`track_rates` of the
    result are the pooled rates (every particle and track weighs the same, whatever its event)."""
    total: dict[str, int] = {}
    for event_counts in counts:
        for key, value in event_counts.items():
            total[key] = total.get(key, 0) + int(value)
    return total


# --------------------------------------------------------------------------------------------
# edge level
# --------------------------------------------------------------------------------------------


def hit_particle_ids(hit_ids: Any, truth: pd.DataFrame) -> np.ndarray:
    """particle_id (0 = noise) of each hit, in the order of ``hit_ids``.

    Raises ValueError when a hit has no truth row.
    """
    hit_ids = _numpy(hit_ids).astype(np.int64, copy=False)
    rows = pd.Index(truth["hit_id"].to_numpy()).get_indexer(hit_ids)
    if (rows < 0).any():
        raise ValueError(f"hit_id {int(hit_ids[rows < 0][0])} has no truth row")
    return truth["particle_id"].to_numpy(np.int64)[rows]


def true_edges(edges: Any, particle_ids: np.ndarray) -> np.ndarray:
    """Boolean [E]: the edge joins two hits of the same non-noise particle.

    ``edges``: [2, E] positions into ``particle_ids`` (the event's hit order).
    """
    edges = _numpy(edges).astype(np.int64, copy=False).reshape(2, -1)
    source, target = particle_ids[edges[0]], particle_ids[edges[1]]
    return (source == target) & (source != 0)


def truth_graph(
    hit_ids: Any,
    truth: pd.DataFrame,
    particles: pd.DataFrame,
    pt_min: float | None = None,
) -> np.ndarray:
    """Edges [2, T] (positions in ``hit_ids``) joining consecutive hits of each particle.

    Only particles with pT > ``pt_min`` GeV (default 1) take part. A particle's hits are ordered by
    the distance of their true position (tx, ty, tz; mm) from its production vertex (vx, vy, vz);
    each edge points outwards (source nearer the vertex). Hits of ``hit_ids`` only.
    """
    pt_min = float(_setting("pt_min", PT_MIN, pt_min))
    hit_ids = _numpy(hit_ids).astype(np.int64, copy=False)
    rows = pd.Index(truth["hit_id"].to_numpy()).get_indexer(hit_ids)
    if (rows < 0).any():
        raise ValueError(f"hit_id {int(hit_ids[rows < 0][0])} has no truth row")
    pid = truth["particle_id"].to_numpy(np.int64)[rows]
    pt = np.hypot(particles["px"].to_numpy(np.float64), particles["py"].to_numpy(np.float64))
    fast = particles.loc[pt > pt_min]
    prow = pd.Index(fast["particle_id"].to_numpy(np.int64)).get_indexer(pid)
    (hits,) = np.nonzero((pid != 0) & (prow >= 0))
    prow = prow[hits]
    vertex = fast[["vx", "vy", "vz"]].to_numpy(np.float64)[prow]
    position = truth[["tx", "ty", "tz"]].to_numpy(np.float64)[rows[hits]]
    distance = np.linalg.norm(position - vertex, axis=1)
    order = np.lexsort((distance, prow))
    hits, prow = hits[order], prow[order]
    consecutive = prow[1:] == prow[:-1]
    return np.stack([hits[:-1][consecutive], hits[1:][consecutive]]).astype(np.int64)


def _undirected_keys(edges: np.ndarray, n_hits: int) -> np.ndarray:
    low, high = np.minimum(edges[0], edges[1]), np.maximum(edges[0], edges[1])
    return low * np.int64(n_hits) + high


@dataclass
class EdgeMetrics:
    """Edge classification against truth for one event and one stage's output.

    ``purity`` = true edges kept ÷ edges kept; ``true_edge_efficiency`` = true edges kept ÷ true
    edges given (what a filter/GNN cut loses); ``efficiency`` = truth-graph edges among the kept
    edges (either direction) ÷ truth-graph edges (NaN when no truth graph was given).
    """

    n_edges: int
    n_kept: int
    n_true: int
    n_true_kept: int
    n_truth_graph: int
    n_truth_graph_found: int
    cut: float | None

    @property
    def purity(self) -> float:
        return _ratio(self.n_true_kept, self.n_kept)

    @property
    def true_edge_efficiency(self) -> float:
        return _ratio(self.n_true_kept, self.n_true)

    @property
    def efficiency(self) -> float:
        return _ratio(self.n_truth_graph_found, self.n_truth_graph)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: counts, and the ratios (None where undefined)."""
        out: dict[str, Any] = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for name in ("efficiency", "purity", "true_edge_efficiency"):
            value = getattr(self, name)
            out[name] = None if math.isnan(value) else value
        return out


def edge_metrics(
    edges: Any,
    particle_ids: np.ndarray,
    edge_scores: Any = None,
    cut: float | None = None,
    truth_edges: Any = None,
) -> EdgeMetrics:
    """Efficiency and purity of a stage's edges.

    ``edges``: [2, E] positions into the event's hit order; ``particle_ids``: particle per hit in
    that order (:func:`hit_particle_ids`); ``edge_scores``: [E] probabilities (apply the sigmoid to
    logits first) — an edge is kept when its score > ``cut``; without scores every edge is kept
    (graph building). ``truth_edges``: [2, T] truth graph (:func:`truth_graph`) or None.
    """
    edges = _numpy(edges).astype(np.int64, copy=False).reshape(2, -1)
    is_true = true_edges(edges, particle_ids)
    kept = np.ones(edges.shape[1], dtype=bool)
    if edge_scores is not None:
        scores = _numpy(edge_scores).reshape(-1)
        if len(scores) != edges.shape[1]:
            raise ValueError(f"{len(scores)} edge scores for {edges.shape[1]} edges")
        kept = scores > (0.5 if cut is None else cut)
    n_truth = n_found = 0
    if truth_edges is not None:
        truth_edges = _numpy(truth_edges).astype(np.int64, copy=False).reshape(2, -1)
        n_hits = len(particle_ids)
        found = np.isin(_undirected_keys(truth_edges, n_hits), _undirected_keys(edges[:, kept], n_hits))
        n_truth, n_found = truth_edges.shape[1], int(found.sum())
    return EdgeMetrics(
        n_edges=int(edges.shape[1]),
        n_kept=int(kept.sum()),
        n_true=int(is_true.sum()),
        n_true_kept=int((is_true & kept).sum()),
        n_truth_graph=int(n_truth),
        n_truth_graph_found=n_found,
        cut=None if edge_scores is None else float(0.5 if cut is None else cut),
    )


def score_edges(
    hit_ids: Any,
    edges: Any,
    truth: pd.DataFrame,
    particles: pd.DataFrame | None = None,
    edge_scores: Any = None,
    cut: float | None = None,
    pt_min: float | None = None,
) -> EdgeMetrics:
    """:func:`edge_metrics` straight from a HitGraph's ``hit_ids``/``edges``/``edge_scores``.

    The truth graph (pT > ``pt_min`` GeV) is built when ``particles`` are given.
    """
    particle_ids = hit_particle_ids(hit_ids, truth)
    graph = None if particles is None else truth_graph(hit_ids, truth, particles, pt_min)
    return edge_metrics(edges, particle_ids, edge_scores, cut, graph)


# --------------------------------------------------------------------------------------------
# track level
# --------------------------------------------------------------------------------------------


@dataclass
class TrackMetrics:
    """Track-level metrics of one event (see the module docstring for the definitions).

    ``particles``: per particle (particle_id, pt in GeV, eta, n_hits, reconstructable,
    reconstructable_pt05, matched, n_tracks) — the input of :func:`binned_efficiency`.
    ``tracks``: per track (track_id, n_hits, particle_id of the majority particle, n_common,
    particle_hits, weight, matched, fake).
    """

    event_id: int | None
    weight_total: float
    weight_matched: float
    counts: dict[str, int]
    particles: pd.DataFrame = field(repr=False)
    tracks: pd.DataFrame = field(repr=False)

    @property
    def trackml_score(self) -> float:
        return _ratio(self.weight_matched, self.weight_total)

    @property
    def efficiency(self) -> float:
        return track_rates(self.counts)["efficiency"]

    @property
    def efficiency_pt05(self) -> float:
        return track_rates(self.counts)["efficiency_pt05"]

    @property
    def fake_rate(self) -> float:
        return track_rates(self.counts)["fake_rate"]

    @property
    def duplicate_rate(self) -> float:
        return track_rates(self.counts)["duplicate_rate"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (ratios None where undefined, e.g. no reconstructable particle)."""
        return {
            "event_id": self.event_id,
            **_rates(self.counts, self.trackml_score),
            "weight_total": self.weight_total,
            "weight_matched": self.weight_matched,
            "counts": dict(self.counts),
        }


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _rates(counts: dict[str, int], trackml_score: float) -> dict[str, float | None]:
    rates = {name: _none_if_nan(rate) for name, rate in track_rates(counts).items()}
    return {"trackml_score": _none_if_nan(trackml_score), **rates}


def _track_ids_per_truth_row(tracks: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    """track_id of each truth row; a hit missing from ``tracks`` becomes a one-hit track."""
    track_hits = tracks["hit_id"].to_numpy(np.int64)
    index = pd.Index(track_hits)
    if not index.is_unique:
        duplicated = track_hits[index.duplicated()][0]
        raise ValueError(f"hit_id {int(duplicated)} is given to more than one track")
    rows = index.get_indexer(truth["hit_id"].to_numpy(np.int64))
    track_id = tracks["track_id"].to_numpy(np.int64)[rows]
    missing = rows < 0
    if missing.any():
        # the reference scorer leaves such hits without a track, i.e. each alone: same here
        start = (int(track_id[~missing].max()) + 1) if (~missing).any() else 0
        track_id[missing] = start + np.arange(int(missing.sum()))
    return track_id


def score_event(
    tracks: pd.DataFrame,
    truth: pd.DataFrame,
    particles: pd.DataFrame,
    *,
    event_id: int | None = None,
    pt_min: float | None = None,
    pt_min_low: float | None = None,
    min_hits: int | None = None,
) -> TrackMetrics:
    """Score one event's tracks against its truth.

    ``tracks``: hit_id, track_id (any integers; other columns ignored). ``truth``: hit_id,
    particle_id (0 = noise), weight; tx, ty, tz not needed. ``particles``: particle_id, px, py, pz
    (GeV). Hits of ``tracks`` absent from the truth are ignored; truth hits absent from ``tracks``
    count as one-hit tracks. Thresholds default to the ``metrics.*`` settings (pt_min 1 GeV,
    pt_min_low 0.5 GeV, min_hits 5). Vectorised: a 100k-hit event takes tens of ms.
    """
    pt_min = float(_setting("pt_min", PT_MIN, pt_min))
    pt_min_low = float(_setting("pt_min_low", PT_MIN_LOW, pt_min_low))
    min_hits = int(_setting("min_hits", MIN_HITS, min_hits))

    track_id = _track_ids_per_truth_row(tracks, truth)
    particle_id = truth["particle_id"].to_numpy(np.int64)
    weight = truth["weight"].to_numpy(np.float64)

    # codes: tracks and particles numbered 0..n-1; particle codes sorted so ties pick the lowest id
    track_code, track_values = pd.factorize(track_id, sort=True)
    particle_code, particle_values = pd.factorize(particle_id, sort=True)
    n_tracks, n_part = len(track_values), len(particle_values)
    particle_hits = np.bincount(particle_code, minlength=n_part)
    track_hits = np.bincount(track_code, minlength=n_tracks)

    # every (track, particle) pair present: hits and weight in common
    pair_key = track_code.astype(np.int64) * n_part + particle_code
    pairs, pair_of_hit, pair_common = np.unique(pair_key, return_inverse=True, return_counts=True)
    pair_weight = np.bincount(pair_of_hit, weights=weight, minlength=len(pairs))
    pair_track, pair_particle = pairs // n_part, pairs % n_part

    # majority particle per track: most hits in common, then the lowest particle_id
    order = np.lexsort((pair_particle, -pair_common, pair_track))
    first = order[np.unique(pair_track[order], return_index=True)[1]]
    major = pair_particle[first]
    common = pair_common[first]
    major_hits = particle_hits[major]
    major_id = np.asarray(particle_values)[major]
    # integer comparisons: exactly 50 % must fail without float rounding
    pure = 2 * common > track_hits
    two_way = pure & (2 * common > major_hits)
    weight_matched = float(pair_weight[first][two_way].sum())

    # per particle (non-noise, from the particles table)
    pid = particles["particle_id"].to_numpy(np.int64)
    px, py, pz = (particles[c].to_numpy(np.float64) for c in ("px", "py", "pz"))
    pt = np.hypot(px, py)
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
    code = pd.Index(np.asarray(particle_values)).get_indexer(pid)
    # code -1 (a particle without hits) picks the appended 0
    n_hits = np.append(particle_hits, 0)[code]
    matched_codes = major[two_way & (major_id != 0)]
    matched = np.isin(code, matched_codes) & (code >= 0) & (pid != 0)
    long_pure = pure & (track_hits >= min_hits) & (major_id != 0)
    tracks_per_code = np.bincount(major[long_pure], minlength=n_part)
    n_long_tracks = np.append(tracks_per_code, 0)[code]
    enough_hits = (n_hits >= min_hits) & (pid != 0)
    reconstructable = enough_hits & (pt > pt_min)
    reconstructable_low = enough_hits & (pt > pt_min_low)

    particle_table = pd.DataFrame(
        {
            "particle_id": pid,
            "pt": pt,
            "eta": eta,
            "n_hits": n_hits,
            "reconstructable": reconstructable,
            "reconstructable_pt05": reconstructable_low,
            "matched": matched,
            "n_tracks": n_long_tracks,
        }
    )
    long_track = track_hits >= min_hits
    fake = long_track & ~(pure & (major_id != 0))
    track_table = pd.DataFrame(
        {
            "track_id": np.asarray(track_values),
            "n_hits": track_hits,
            "particle_id": major_id,
            "n_common": common,
            "particle_hits": major_hits,
            "weight": pair_weight[first],
            "matched": two_way,
            "fake": fake,
        }
    )
    counts = {
        "hits": len(truth),
        "noise_hits": int((particle_id == 0).sum()),
        "particles": int((pid != 0).sum()),
        "tracks": int(n_tracks),
        "tracks_min_hits": int(long_track.sum()),
        "fake_tracks": int(fake.sum()),
        "matched_tracks": int(two_way.sum()),
        "reconstructable": int(reconstructable.sum()),
        "matched": int((reconstructable & matched).sum()),
        "reconstructable_pt05": int(reconstructable_low.sum()),
        "matched_pt05": int((reconstructable_low & matched).sum()),
        "duplicated_particles": int((reconstructable & matched & (n_long_tracks > 1)).sum()),
    }
    return TrackMetrics(
        event_id=event_id,
        weight_total=float(weight.sum()),
        weight_matched=weight_matched,
        counts=counts,
        particles=particle_table,
        tracks=track_table,
    )


def secondary_counts(scored: TrackMetrics, particles: pd.DataFrame) -> dict[str, int]:
    """Reconstructable and matched secondaries (:data:`SECONDARY_MIN_R`) of one scored event, as
    :func:`score_event` counted them (its pT and hit cuts): ``reconstructable_secondary``,
    ``matched_secondary``.
    ``particles`` as given to :func:`score_event`, whose particle table is in its order."""
    radius = np.hypot(particles["vx"].to_numpy(np.float64), particles["vy"].to_numpy(np.float64))
    table = scored.particles
    reconstructable = table["reconstructable"].to_numpy() & (radius > SECONDARY_MIN_R)
    return {
        "reconstructable_secondary": int(reconstructable.sum()),
        "matched_secondary": int((reconstructable & table["matched"].to_numpy()).sum()),
    }


# --------------------------------------------------------------------------------------------
# efficiency in bins, with binomial uncertainties
# --------------------------------------------------------------------------------------------


def binomial_interval(
    passed: Any,
    total: Any,
    confidence: float = ONE_SIGMA,
    method: Literal["clopper-pearson", "wilson"] = "clopper-pearson",
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of an efficiency ``passed / total`` (NaN where total is 0).

    Clopper-Pearson is exact (conservative); Wilson is the score interval. ``confidence`` is the
    two-sided coverage, by default one standard deviation (68.3 %).
    """
    k = np.asarray(passed, dtype=np.float64)
    n = np.asarray(total, dtype=np.float64)
    alpha = 1.0 - confidence
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "clopper-pearson":
            low = np.where(k > 0, stats.beta.ppf(alpha / 2, k, n - k + 1), 0.0)
            high = np.where(k < n, stats.beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
        elif method == "wilson":
            z = stats.norm.ppf(1 - alpha / 2)
            p = k / n
            centre = (p + z * z / (2 * n)) / (1 + z * z / n)
            half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
            low, high = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
        else:
            raise ValueError(f"unknown interval method {method!r}; use 'clopper-pearson' or 'wilson'")
    empty = n <= 0
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def binned_efficiency(
    particles: pd.DataFrame | Iterable[pd.DataFrame] | TrackMetrics | Iterable[TrackMetrics],
    variable: Literal["pt", "eta"],
    bins: Any,
    pt_min: float | None = None,
    min_hits: int | None = None,
    confidence: float = ONE_SIGMA,
    method: Literal["clopper-pearson", "wilson"] = "clopper-pearson",
) -> pd.DataFrame:
    """Track efficiency in bins of particle pT (GeV) or eta, with binomial error bars.

    ``particles``: the ``particles`` table of :class:`TrackMetrics` (or the metrics themselves, or
    several of either: pooled). Denominator: non-noise particles with ≥ ``min_hits`` hits and
    pT > ``pt_min`` GeV (default 0 for a pT curve, 1 GeV for an eta curve) inside the bin.
    Returns one row per bin: low, high, reconstructable, matched, efficiency, error_low, error_high
    (distances from the efficiency to the interval's ends).
    """
    several: Iterable[pd.DataFrame | TrackMetrics] = (
        [particles] if isinstance(particles, TrackMetrics | pd.DataFrame) else particles
    )
    frames = [p.particles if isinstance(p, TrackMetrics) else p for p in several]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if variable not in ("pt", "eta"):
        raise ValueError(f"variable must be 'pt' or 'eta', not {variable!r}")
    if pt_min is None:
        pt_min = 0.0 if variable == "pt" else float(_setting("pt_min", PT_MIN))
    min_hits = int(_setting("min_hits", MIN_HITS, min_hits))
    edges = np.asarray(bins, dtype=np.float64)
    denominator = (
        (table["particle_id"].to_numpy() != 0)
        & (table["n_hits"].to_numpy() >= min_hits)
        & (table["pt"].to_numpy() > pt_min)
    )
    values = table[variable].to_numpy(np.float64)[denominator]
    passed = table["matched"].to_numpy(bool)[denominator]
    total_in_bin = np.histogram(values, bins=edges)[0]
    passed_in_bin = np.histogram(values[passed], bins=edges)[0]
    low, high = binomial_interval(passed_in_bin, total_in_bin, confidence, method)
    with np.errstate(divide="ignore", invalid="ignore"):
        efficiency = np.where(total_in_bin > 0, passed_in_bin / total_in_bin, np.nan)
    return pd.DataFrame(
        {
            "low": edges[:-1],
            "high": edges[1:],
            "reconstructable": total_in_bin,
            "matched": passed_in_bin,
            "efficiency": efficiency,
            "error_low": efficiency - low,
            "error_high": high - efficiency,
        }
    )


# --------------------------------------------------------------------------------------------
# a submission CSV against a directory of events with truth
# --------------------------------------------------------------------------------------------


def score_submission(
    events_dir: str | Path,
    submission_csv: str | Path,
    event_ids: Iterable[int] | None = None,
    on_event: Callable[[TrackMetrics, Event, pd.DataFrame], None] | None = None,
) -> dict[str, Any]:
    """Score a TrackML submission CSV against the truth of the events in ``events_dir``.

    Scores the events of the submission (or only ``event_ids``). Every scored event needs its
    truth and particles files, and the submission must hold each of its hits exactly once.
    Returns a JSON-ready dict: trackml_score (mean over events, as the challenge), efficiency
    (pT > 1 GeV), efficiency_pt05, fake_rate, duplicate_rate (pooled over events), counts (summed,
    plus ``events``), and ``events``: one summary per event. Raises EventFileError naming the file
    and the problem. ``on_event(metrics, event, tracks)`` is called once per event as it is scored,
    with the event's hits, truth and particles and its submission rows, so that a consumer (the
    efficiency plots of :mod:`trackflow.run.tracking_plots`) reads each event once, not twice.
    """
    # imported here: the metrics of one event need no file handling
    from trackflow.events.submission import check_tracks, read_submission
    from trackflow.events.trackml import list_events

    submission_csv = Path(submission_csv)
    submission = read_submission(submission_csv)
    submitted = np.unique(submission["event_id"].to_numpy())
    wanted = submitted if event_ids is None else np.unique(np.asarray(list(event_ids), np.int64))
    if len(wanted) == 0:
        raise EventFileError(submission_csv, "holds no tracks: nothing to score")
    absent = np.setdiff1d(wanted, submitted)
    if len(absent):
        raise EventFileError(
            submission_csv, f"has no tracks for event id(s) {', '.join(map(str, absent[:10]))}"
        )
    refs = list_events(events_dir, wanted.tolist())
    per_event: list[TrackMetrics] = []
    grouped = dict(tuple(submission.groupby("event_id", sort=True)))
    for ref in refs:
        for part in ("truth", "particles"):
            if part not in ref.paths:
                raise EventFileError(
                    ref.expected_path(part), f"missing {part} file: scoring event {ref.event_id} needs it"
                )
        event = ref.load(("hits", "truth", "particles"))
        assert event.truth is not None and event.particles is not None  # checked just above
        tracks = grouped[ref.event_id]
        check_tracks(tracks, event.hits, ref.event_id, submission_csv)
        scored = score_event(tracks, event.truth, event.particles, event_id=ref.event_id)
        per_event.append(scored)
        if on_event is not None:
            on_event(scored, event, tracks)

    counts = {key: sum(m.counts[key] for m in per_event) for key in per_event[0].counts}
    mean_score = float(np.mean([m.trackml_score for m in per_event]))
    return {
        **_rates(counts, mean_score),
        "counts": {"events": len(per_event), **counts},
        "events": [
            {"event_id": m.event_id, **_rates(m.counts, m.trackml_score), "hits": m.counts["hits"]}
            for m in per_event
        ],
    }
