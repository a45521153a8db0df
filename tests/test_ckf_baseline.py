"""The classical baseline (ACTS seeding + CKF + greedy ambiguity resolution): hits in, every hit
out in a submission that ``trackflow score`` scores, at the efficiency a CKF reaches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import need_acts

from trackflow.classical import ClassicalTrackingConfig, assign_hits, hit_measurements, reconstruct_event
from trackflow.errors import ConfigError, EventFileError
from trackflow.events import list_events, read_submission
from trackflow.events.simulation import SimulationConfig
from trackflow.events.submission import check_tracks
from trackflow.metrics import score_event

REPO = Path(__file__).resolve().parents[1]


def test_shared_hits_go_to_the_longer_track_and_lonely_hits_to_their_own() -> None:
    # measurements 0..7; track 0 has 3, track 1 has 4 (shares 2 and 3 with track 0); 7 on none
    labels, shared = assign_hits(
        8,
        [np.array([1, 2, 3]), np.array([2, 3, 4, 5]), np.array([6])],
        np.array([3, 4, 1]),
        np.array([1.0, 9.0, 0.5]),
    )
    assert shared == 2
    assert labels[[1, 2, 3, 4, 5, 6]].tolist() == [0, 1, 1, 1, 1, 2]
    # measurement 0 and 7: tracks of their own, with labels no track has
    assert labels[0] != labels[7] and min(labels[0], labels[7]) >= 3


def test_equal_tracks_share_by_chi2_then_index() -> None:
    labels, _ = assign_hits(3, [np.array([0, 1]), np.array([1, 2])], np.array([2, 2]), np.array([5.0, 2.0]))
    assert labels[1] == 1  # the lower chi2
    labels, _ = assign_hits(3, [np.array([0, 1]), np.array([1, 2])], np.array([2, 2]), np.array([2.0, 2.0]))
    assert labels[1] == 0  # then the lower index


def test_no_track_leaves_every_hit_alone() -> None:
    labels, shared = assign_hits(4, [], np.array([]), np.array([]))
    assert shared == 0 and sorted(labels.tolist()) == [0, 1, 2, 3]


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="min_pt"):
        ClassicalTrackingConfig(min_pt=0.0)
    with pytest.raises(ConfigError, match="r_middle"):
        ClassicalTrackingConfig(r_middle=(200.0, 20.0))


# ------------------------------------------------------------------------------ with pyacts
@pytest.fixture(scope="module")
def _acts() -> None:
    need_acts()


@pytest.fixture(scope="module")
def gun_dir(_acts: None, tmp_path_factory: pytest.TempPathFactory, detectors_csv: Path) -> Path:
    """One small event: 10 vertices of 10 pions (pT 0.5-10 GeV, |eta| < 3), noise 0.15."""
    from trackflow import simulate

    out = tmp_path_factory.mktemp("ckf_events")
    config = SimulationConfig(seed=11, pileup=10, particles_per_vertex=10, detectors=detectors_csv)
    simulate(config, out, 1, workers=1, progress=False)
    return out


@pytest.mark.sim
def test_local_coordinates_lie_on_the_acts_surface(gun_dir: Path, detectors_csv: Path) -> None:
    import acts

    from trackflow.events.acts_setup import acts_detector

    event = list_events(gun_dir)[0].load(("hits",))
    measurements = hit_measurements(event.hits, detectors_csv)
    assert sorted(measurements.order.tolist()) == list(range(event.n_hits))
    setup = acts_detector(str(detectors_csv))
    context = acts.GeometryContext.dangerouslyDefaultConstruct()
    position = event.hits[["x", "y", "z"]].to_numpy(np.float64)[measurements.order]
    for i in range(0, len(measurements), 37):
        identifier = acts.GeometryIdentifier(
            volume=int(measurements.volume[i]),
            layer=int(measurements.layer[i]),
            sensitive=int(measurements.sensitive[i]),
        )
        back = setup.surfaces[identifier].localToGlobal(
            context, acts.Vector2(*measurements.local[i]), acts.Vector3(0.0, 0.0, 1.0)
        )
        # hits are float32 in the files: about 1e-4 mm at 1 m
        np.testing.assert_allclose(np.asarray(back), position[i], atol=2e-3)
    assert np.all(measurements.variance > 0)


@pytest.mark.sim
def test_a_hit_off_the_detector_is_refused(gun_dir: Path, detectors_csv: Path) -> None:
    hits = list_events(gun_dir)[0].load(("hits",)).hits.copy()
    hits.loc[0, "module_id"] = 999_999
    with pytest.raises(EventFileError, match="modules the detector lacks"):
        hit_measurements(hits, detectors_csv)


@pytest.mark.sim
def test_ckf_covers_every_hit_and_finds_the_tracks(gun_dir: Path, detectors_csv: Path) -> None:
    event = list_events(gun_dir)[0].load()
    assert event.truth is not None and event.particles is not None
    tracks = reconstruct_event(event.hits_only(), ClassicalTrackingConfig(detectors=detectors_csv))
    frame = tracks.to_frame()
    check_tracks(frame, event.hits, event.event_id)  # every hit exactly once
    scored = score_event(frame, event.truth, event.particles)
    counts = scored.counts
    assert counts["reconstructable"] >= 50
    # about 100 % is what it reaches on this event; a broken hit <-> measurement map gives ~0
    assert counts["matched"] / counts["reconstructable"] > 0.9
    assert counts["matched_pt05"] / counts["reconstructable_pt05"] > 0.85
    assert counts["fake_tracks"] <= 0.05 * counts["tracks_min_hits"]
    assert tracks.counts["tracks"] >= counts["matched"]
    assert 0 < tracks.seconds <= tracks.wall_seconds
    assert set(tracks.timings) >= {"seeding", "ckf", "ambiguity", "measurements"}


@pytest.mark.sim
def test_ambiguity_resolution_is_what_keeps_duplicates_out(gun_dir: Path, detectors_csv: Path) -> None:
    """The CKF alone finds more tracks than particles (several per seed); after the resolution
    there are no more tracks than the particles it matched plus a few."""
    event = list_events(gun_dir)[0].load()
    tracks = reconstruct_event(event.hits_only(), ClassicalTrackingConfig(detectors=detectors_csv))
    assert tracks.counts["ckf_tracks"] >= tracks.counts["tracks"]
    scored = score_event(tracks.to_frame(), event.truth, event.particles)
    assert scored.counts["duplicated_particles"] <= 0.02 * scored.counts["matched"]


@pytest.mark.sim
@pytest.mark.slow
def test_script_writes_a_submission_that_trackflow_score_scores(
    gun_dir: Path, tmp_path: Path, detectors_csv: Path
) -> None:
    out = tmp_path / "ckf"
    script = REPO / "benchmarks" / "ckf_baseline.py"
    subprocess.run(
        [sys.executable, str(script), str(gun_dir), "--out", str(out), "--detectors", str(detectors_csv)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    submission = read_submission(out / "submission.csv")
    event = list_events(gun_dir)[0].load(("hits",))
    assert len(submission) == event.n_hits
    times = json.loads((out / "ckf_times.json").read_text())
    assert times["events"][0]["seconds"] > 0
    scored = subprocess.run(
        [sys.executable, "-m", "trackflow", "score", str(gun_dir), str(out / "submission.csv")],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert json.loads(scored.stdout)["efficiency"] > 0.9
