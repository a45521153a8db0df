"""The pictures a physicist looks at first, written beside ``report.json``.

Files (names in :data:`TRUTH_FILES` and :data:`STAGE_TIMES_FILE`):

``efficiency_pt.png``
    track efficiency (two-way match, as :mod:`trackflow.metrics` defines it) against the
    particle's pT (GeV, log axis): particles with ≥ 5 hits, of any pT.
``efficiency_eta.png``
    the same against η: particles with ≥ 5 hits and pT > 1 GeV, the headline efficiency's
    denominator.
``efficiency.json``
    the numbers behind both: per bin low, high, reconstructable, matched, efficiency, error_low,
    error_high (the columns of :func:`trackflow.metrics.binned_efficiency`), and the particles
    below and above the bins, so that bins and overflow add up to the run's counts.
``event_display.png``
    one event in x–y and r–z (mm): the hits of each track with ≥ 5 hits coloured by track and
    joined in order of r, the other hits grey.
``stage_times.png``
    seconds per event in each stage (load, the five pipeline stages, finish), stacked: the mean
    over the run's events, its median event and its slowest event (report.json ``per_event``).

Error bars are Clopper–Pearson 68.3 % intervals (:func:`trackflow.metrics.binomial_interval`) of
the counts pooled over events, so a campaign of any size keeps only the counts in memory. The
efficiency plots and the event display need truth; a run on events without truth gets the stage
times only. Drawing never fails a run: a picture that cannot be drawn is logged as a warning and
left out.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection

from trackflow import config, metrics
from trackflow.errors import ConfigError
from trackflow.figures import new_figure, plot_stage_breakdown, save_figure
from trackflow.files import json_safe, write_json

if TYPE_CHECKING:
    from trackflow.events.event import Event

logger = logging.getLogger(__name__)

EFFICIENCY_PT_FILE = "efficiency_pt.png"
EFFICIENCY_ETA_FILE = "efficiency_eta.png"
EFFICIENCY_JSON_FILE = "efficiency.json"
EVENT_DISPLAY_FILE = "event_display.png"
STAGE_TIMES_FILE = "stage_times.png"
#: the files that need truth (removed from the directory by a run that cannot draw them, so no
#: picture of an earlier run is left looking like this one's)
TRUTH_FILES = (EFFICIENCY_PT_FILE, EFFICIENCY_ETA_FILE, EFFICIENCY_JSON_FILE, EVENT_DISPLAY_FILE)


def _edges(key: str, value: Any) -> tuple[float, ...]:
    edges = tuple(float(v) for v in value)
    if len(edges) < 2 or any(not math.isfinite(e) for e in edges) or np.any(np.diff(edges) <= 0):
        raise ConfigError(f"plots.{key}: {list(value)} must be two or more finite, increasing bin edges")
    return edges


@dataclass
class PlotSettings:
    """What the pictures show (None = the ``plots.*`` setting of trackflow.yaml).

    ``pt_bins`` (GeV) and ``eta_bins``: bin edges, increasing. ``display_event``: the id of the
    event drawn in the event display; None = the first event scored (the lowest id).
    ``display_min_hits``: fewest hits of a track drawn in colour (default ``metrics.min_hits``).
    ``dpi``: resolution of the PNG files (dots per inch).
    """

    pt_bins: tuple[float, ...] | None = None
    eta_bins: tuple[float, ...] | None = None
    display_event: int | None = None
    display_min_hits: int | None = None
    dpi: int = 110

    def __post_init__(self) -> None:
        self.pt_bins = _edges("pt_bins", self.pt_bins or config.get("plots.pt_bins"))
        self.eta_bins = _edges("eta_bins", self.eta_bins or config.get("plots.eta_bins"))
        if self.display_event is None:
            self.display_event = config.get("plots.display_event")
        if self.display_min_hits is None:
            self.display_min_hits = int(config.get("metrics.min_hits"))
        if self.display_min_hits < 1:
            raise ConfigError(f"display_min_hits {self.display_min_hits}: must be >= 1")


@dataclass
class EfficiencyCounts:
    """Reconstructable and matched particles in bins of ``variable``, summed over events.

    ``edges``: the bins (pT in GeV, or eta); ``pt_min``: GeV, the lower pT cut of the denominator.
    The counts have one entry more at each end: the particles below and above the bins.
    """

    variable: Literal["pt", "eta"]
    edges: tuple[float, ...]
    pt_min: float
    reconstructable: np.ndarray = field(init=False, repr=False)
    matched: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.reconstructable = np.zeros(len(self.edges) + 1, dtype=np.int64)
        self.matched = np.zeros(len(self.edges) + 1, dtype=np.int64)

    def add(self, scored: metrics.TrackMetrics) -> None:
        """Add one event's particles (their table in :class:`trackflow.metrics.TrackMetrics`)."""
        table = metrics.binned_efficiency(
            scored, self.variable, [-np.inf, *self.edges, np.inf], pt_min=self.pt_min
        )
        self.reconstructable += table["reconstructable"].to_numpy(np.int64)
        self.matched += table["matched"].to_numpy(np.int64)

    def table(self) -> pd.DataFrame:
        """One row per bin: low, high, reconstructable, matched, efficiency (NaN in an empty bin),
        error_low, error_high (distances from the efficiency to the interval's ends)."""
        total, passed = self.reconstructable[1:-1], self.matched[1:-1]
        low, high = metrics.binomial_interval(passed, total)
        with np.errstate(divide="ignore", invalid="ignore"):
            efficiency = np.where(total > 0, passed / total, np.nan)
        return pd.DataFrame(
            {
                "low": self.edges[:-1],
                "high": self.edges[1:],
                "reconstructable": total,
                "matched": passed,
                "efficiency": efficiency,
                "error_low": efficiency - low,
                "error_high": high - efficiency,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the cut, the bins, the under- and overflow and the totals over all."""
        total, passed = int(self.reconstructable.sum()), int(self.matched.sum())
        return json_safe(
            {
                "variable": self.variable,
                "pt_min_gev": self.pt_min,
                "min_hits": int(config.get("metrics.min_hits")),
                "bins": self.table().to_dict(orient="records"),
                "underflow": {
                    "reconstructable": int(self.reconstructable[0]),
                    "matched": int(self.matched[0]),
                },
                "overflow": {
                    "reconstructable": int(self.reconstructable[-1]),
                    "matched": int(self.matched[-1]),
                },
                "total": {
                    "reconstructable": total,
                    "matched": passed,
                    "efficiency": passed / total if total else None,
                },
            }
        )


@dataclass
class DisplayedEvent:
    """The event of the event display: hit positions (mm) and the track of each hit (-1: none)."""

    event_id: int
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    track_id: np.ndarray

    @classmethod
    def from_event(cls, event: Event, tracks: pd.DataFrame) -> DisplayedEvent:
        """``tracks``: hit_id, track_id of the event (its submission rows)."""
        rows = pd.Index(tracks["hit_id"].to_numpy(np.int64)).get_indexer(event.hits["hit_id"].to_numpy())
        track_id = np.where(rows >= 0, tracks["track_id"].to_numpy(np.int64)[rows], -1)
        x, y, z = (event.hits[c].to_numpy(np.float64) for c in ("x", "y", "z"))
        return cls(event.event_id, x, y, z, track_id)


class TruthPlots:
    """The pictures that need truth, filled event by event while the events are scored.

    Pass :meth:`add_event` as ``on_event`` to :func:`trackflow.metrics.score_submission`, then
    :meth:`write`. An event that cannot be added is logged as a warning and the plots are left
    out; scoring goes on.
    """

    def __init__(self, settings: PlotSettings | None = None) -> None:
        self.settings = settings or PlotSettings()
        pt_min = float(config.get("metrics.pt_min"))
        assert self.settings.pt_bins is not None and self.settings.eta_bins is not None  # __post_init__
        self.pt = EfficiencyCounts("pt", self.settings.pt_bins, pt_min=0.0)
        self.eta = EfficiencyCounts("eta", self.settings.eta_bins, pt_min=pt_min)
        self.event_ids: list[int] = []
        self.display: DisplayedEvent | None = None
        self.problem: str | None = None

    def add_event(self, scored: metrics.TrackMetrics, event: Event, tracks: pd.DataFrame) -> None:
        """Count one scored event's particles; keep the event shown in the display."""
        if self.problem is not None:
            return
        try:
            self.pt.add(scored)
            self.eta.add(scored)
            wanted = self.settings.display_event
            if (wanted is None and self.display is None) or event.event_id == wanted:
                self.display = DisplayedEvent.from_event(event, tracks)
        except Exception as error:  # a picture must never stop the scoring
            self.problem = f"event {event.event_id}: {type(error).__name__}: {error}"
            logger.warning("efficiency plots left out: %s", self.problem, exc_info=True)
        else:
            self.event_ids.append(int(event.event_id))

    def efficiency_json(self) -> dict[str, Any]:
        """What ``efficiency.json`` holds: the events, the interval, the pT and eta curves."""
        return {
            "events": self.event_ids,
            "interval": {"method": "clopper-pearson", "confidence": metrics.ONE_SIGMA},
            "pt": self.pt.to_dict(),
            "eta": self.eta.to_dict(),
        }

    def write(self, out_dir: Path) -> list[Path]:
        """Write the efficiency plots, efficiency.json and the event display to ``out_dir``.

        Returns the paths written: none when no event was added or adding failed. Each picture
        that fails is logged as a warning and left out.
        """
        out_dir = Path(out_dir)
        if self.problem is not None or not self.event_ids:
            return []
        dpi = self.settings.dpi
        steps = [
            (EFFICIENCY_JSON_FILE, lambda path: write_json(path, self.efficiency_json())),
            (EFFICIENCY_PT_FILE, lambda path: plot_efficiency(self.pt, len(self.event_ids), path, dpi)),
            (EFFICIENCY_ETA_FILE, lambda path: plot_efficiency(self.eta, len(self.event_ids), path, dpi)),
        ]
        display = self.display
        if display is not None:
            min_hits = int(self.settings.display_min_hits or metrics.MIN_HITS)
            steps.append((EVENT_DISPLAY_FILE, lambda path: plot_event_display(display, path, min_hits, dpi)))
        elif self.settings.display_event is not None:
            logger.warning("event display left out: event %s was not scored", self.settings.display_event)
        return [p for name, draw in steps if (p := _guarded(name, draw, out_dir / name)) is not None]


def _guarded(name: str, draw: Any, path: Path) -> Path | None:
    """``draw(path)``, or None with a warning when it fails (a picture never fails a run)."""
    try:
        return draw(path)
    except Exception as error:
        logger.warning("%s left out: %s: %s", name, type(error).__name__, error, exc_info=True)
        return None


# --------------------------------------------------------------------------- the pictures
def plot_efficiency(counts: EfficiencyCounts, n_events: int, path: Path, dpi: int = 110) -> Path:
    """Efficiency per bin with its interval (points), reconstructable particles per bin (grey
    steps, right axis). pT on a log axis (GeV)."""
    table = counts.table()
    fig, ax = new_figure((6.4, 4.4))
    is_pt = counts.variable == "pt"
    low, high = table["low"].to_numpy(), table["high"].to_numpy()
    centre = np.sqrt(low * high) if is_pt and low.min() > 0 else (low + high) / 2
    shown = table["reconstructable"].to_numpy() > 0
    particles = ax.twinx()
    particles.stairs(table["reconstructable"], [*low, high[-1]], color="0.75", fill=True, alpha=0.5)
    particles.set_ylabel("reconstructable particles per bin", color="0.45")
    particles.tick_params(axis="y", colors="0.45")
    ax.set_zorder(particles.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.errorbar(
        centre[shown],
        table["efficiency"][shown],
        xerr=[(centre - low)[shown], (high - centre)[shown]],
        yerr=[table["error_low"][shown], table["error_high"][shown]],
        fmt="o",
        color="tab:blue",
        markersize=4,
        capsize=2,
    )
    summary = counts.to_dict()
    overall = summary["total"]["efficiency"]
    if overall is not None:
        ax.axhline(overall, color="tab:blue", linestyle=":", linewidth=1)
    symbol = "$p_T$" if is_pt else r"$\eta$"
    cut = f"{summary['min_hits']} or more hits"
    if is_pt:
        ax.set_xscale("log")
        ax.set_xlabel("particle $p_T$ (GeV)")
    else:
        ax.set_xlabel(r"particle $\eta$")
        cut = f"$p_T$ > {counts.pt_min:g} GeV, {cut}"
    ax.set_xlim(low[0], high[-1])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("track efficiency (two-way match)")
    total = "" if overall is None else f"; all: {overall:.3f} (dotted)"
    ax.set_title(f"Efficiency vs {symbol}: {n_events} event(s), {cut}{total}", fontsize=9)
    ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=dpi)


def plot_event_display(display: DisplayedEvent, path: Path, min_hits: int = 5, dpi: int = 110) -> Path:
    """x–y and r–z views (mm) of one event: tracks with ≥ ``min_hits`` hits coloured, their hits
    joined in order of r; every other hit (short tracks, hits in no track) grey."""
    x, y, z, track = display.x, display.y, display.z, display.track_id
    r = np.hypot(x, y)
    labels, per_hit, size = np.unique(track, return_inverse=True, return_counts=True)
    long_track = (size >= min_hits) & (labels >= 0)
    coloured = long_track[per_hit]
    palette = mpl.colormaps["tab20"]
    # the rank of a track among the coloured ones picks its colour: neighbours in rank differ
    rank = np.cumsum(long_track) - 1
    colour = palette((rank[per_hit] % palette.N) / max(palette.N - 1, 1))

    n_tracks = int(long_track.sum())
    # a full TrackML event has thousands of tracks: thinner lines keep them apart
    line_width, hit_size = (0.7, 3.0) if n_tracks < 300 else (0.25, 0.8)

    fig, (ax_xy, ax_rz) = new_figure((12, 5.6), ncols=2)
    order = np.flatnonzero(coloured)[np.lexsort((r[coloured], per_hit[coloured]))]
    joined = per_hit[order][1:] == per_hit[order][:-1]
    first, second = order[:-1][joined], order[1:][joined]
    for ax, (u, v) in ((ax_xy, (x, y)), (ax_rz, (z, r))):
        ax.scatter(u[~coloured], v[~coloured], s=1, color="0.7", linewidths=0, rasterized=True)
        segments = np.stack([np.stack([u[first], v[first]], 1), np.stack([u[second], v[second]], 1)], 1)
        ax.add_collection(LineCollection(list(segments), colors=colour[first], linewidths=line_width))
        ax.scatter(u[coloured], v[coloured], s=hit_size, color=colour[coloured], linewidths=0)
        ax.grid(alpha=0.3)
    ax_xy.set_aspect("equal", adjustable="datalim")
    ax_xy.set_xlabel("x (mm)")
    ax_xy.set_ylabel("y (mm)")
    ax_rz.set_xlabel("z (mm)")
    ax_rz.set_ylabel("r (mm)")
    fig.suptitle(
        f"event {display.event_id}: {len(x)} hits; {n_tracks} tracks with {min_hits} or more hits "
        f"({int(coloured.sum())} hits, coloured), other hits grey",
        fontsize=10,
    )
    return save_figure(fig, path, dpi=dpi)


def stage_seconds(per_event: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Seconds per stage of the mean event, the median event and the slowest event (by the sum
    of their stages), from report.json's ``per_event`` rows; {} when there is none."""
    timed = [e for e in per_event if e.get("timings")]
    if not timed:
        return {}
    stages: list[str] = []
    for e in timed:
        stages.extend(s for s in e["timings"] if s not in stages)
    timed.sort(key=lambda e: sum(e["timings"].values()))
    mean = {s: float(np.mean([e["timings"].get(s, 0.0) for e in timed])) for s in stages}
    if len(timed) == 1:
        return {f"event {timed[0]['event_id']}": {s: timed[0]["timings"].get(s, 0.0) for s in stages}}
    median, slowest = timed[(len(timed) - 1) // 2], timed[-1]
    return {
        f"mean of {len(timed)} events": mean,
        f"median event ({median['event_id']})": {s: median["timings"].get(s, 0.0) for s in stages},
        f"slowest event ({slowest['event_id']})": {s: slowest["timings"].get(s, 0.0) for s in stages},
    }


def plot_stage_times(report: dict[str, Any], path: Path) -> Path | None:
    """The per-stage time breakdown of a run from its report.json dictionary (None: no event
    was processed by this run, e.g. everything resumed)."""
    bars = stage_seconds(report.get("per_event") or [])
    if not bars:
        return None
    return plot_stage_breakdown(bars, path, title=f"Time per event by stage ({report.get('mode')} mode)")


# --------------------------------------------------------------------------- entry points
def write_run_plots(report: dict[str, Any], out_dir: Path, truth: TruthPlots | None = None) -> list[Path]:
    """Every picture of a reconstruction run into ``out_dir``: the stage times from ``report``
    (the report.json dictionary) and, when events were scored into ``truth``, the efficiency
    plots and the event display. Pictures of an earlier run that this one cannot draw are
    removed. Never raises for a picture: a failure is logged as a warning. Returns the paths
    written."""
    out_dir = Path(out_dir)
    for name in (*TRUTH_FILES, STAGE_TIMES_FILE):  # temporaries of a run killed mid-write
        for partial in out_dir.glob(f".{name}.*.tmp"):
            partial.unlink(missing_ok=True)
    written = [] if truth is None else truth.write(out_dir)
    for name in TRUTH_FILES:
        stale = out_dir / name
        if stale not in written and stale.is_file():
            try:
                stale.unlink()
            except OSError as error:
                logger.warning("%s of an earlier run left in place: %s", stale, error)
    stage_plot = _guarded(
        STAGE_TIMES_FILE, lambda path: plot_stage_times(report, path), out_dir / STAGE_TIMES_FILE
    )
    return [*written, *([stage_plot] if stage_plot is not None else [])]


def score_with_plots(
    events_dir: Path, submission_csv: Path, plots_dir: Path, settings: PlotSettings | None = None
) -> tuple[dict[str, Any], list[Path]]:
    """:func:`trackflow.metrics.score_submission`, and its efficiency plots, efficiency.json and
    event display written to ``plots_dir``: (the score summary, the paths written)."""
    truth = TruthPlots(settings)
    summary = metrics.score_submission(events_dir, submission_csv, on_event=truth.add_event)
    return summary, truth.write(Path(plots_dir))
