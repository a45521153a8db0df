"""Robustness: the shipped models on a wide-beam-spot event simulated from held-out kinematics.

The particles of TrackML event 1020 (never trained on) with every primary vertex's z drawn from
N(0, 55 mm), about the HL-LHC luminous region, instead of the file's own ~5 mm; 15 % of the
vertices (a low-pileup event of ~1.4k particles, so it runs in seconds), 15 % noise. The full
matrix of such conditions is ``benchmarks/robustness.py``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from conftest import require

from trackflow import metrics
from trackflow.events import list_events
from trackflow.events.simulation import SimulationConfig
from trackflow.pipeline.pipeline import Pipeline
from trackflow.run.parallel_simulation import simulate

pytestmark = [pytest.mark.sim, pytest.mark.slow]

HELD_OUT_PARTICLES = "event000001020-particles.csv.gz"
#: a few points below what the shipped models reach on this event (95.5 %, 148 of 155, with the
#: layer-map models of issue 16); the narrow-beam-spot models before them reached 38.7 % (60 of
#: 155), so a regression to a model that learned one beam spot fails here
EFFICIENCY_FLOOR = 0.90
FAKE_RATE_CEILING = 0.03
#: fewest reconstructable particles (pT > 1 GeV, >= 5 hits) for the floor to mean something
MIN_RECONSTRUCTABLE = 30


def wide_beam_spot_config(particles: Path, detectors: Path) -> SimulationConfig:
    return SimulationConfig(
        seed=31415,
        particles_from=particles,
        beam_sigma_z=55.0,
        vertex_fraction=0.15,
        noise_fraction=0.15,
        detectors=detectors,
    )


def simulate_reconstruct_score(
    config: SimulationConfig, out_dir: Path, pipeline: Pipeline
) -> metrics.TrackMetrics:
    """Simulate one event into ``out_dir``, reconstruct it from its hits alone, score it."""
    simulate(config, out_dir, 1, workers=1, progress=False)
    (ref,) = list_events(out_dir)
    event = ref.load(("hits", "truth", "particles"))
    tracks = pipeline(event.hits_only()).to_frame()
    return metrics.score_event(tracks, event.truth, event.particles, event_id=event.event_id)


def test_shipped_models_on_a_wide_beam_spot(tmp_path: Path, trackml_dir: Path, detectors_csv: Path) -> None:
    require(importlib.util.find_spec("acts") is not None, "pyacts is not installed")
    particles = trackml_dir / HELD_OUT_PARTICLES
    require(particles.is_file(), f"held-out particles file not found: {particles}")
    config = wide_beam_spot_config(particles, detectors_csv)
    scored = simulate_reconstruct_score(config, tmp_path, Pipeline.load(threads=1))
    counts = scored.counts
    summary = (
        f"efficiency {scored.efficiency:.3f} ({counts['matched']}/{counts['reconstructable']}), "
        f"fake rate {scored.fake_rate:.4f}, duplicate rate {scored.duplicate_rate:.4f}"
    )
    assert counts["reconstructable"] >= MIN_RECONSTRUCTABLE, summary
    assert scored.efficiency >= EFFICIENCY_FLOOR, summary
    assert scored.fake_rate <= FAKE_RATE_CEILING, summary
