"""The pictures beside report.json (trackflow.run.tracking_plots): written by a run on
events with truth, consistent with ``trackflow score``, only the stage times without truth, and
never the cause of a failed run.

One small ACTS event (a particle gun, a few hundred hits, seconds) reconstructed with the
shipped models, so the tracks are real and the event display has coloured tracks.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import need_acts
from matplotlib import image

from trackflow.cli import main
from trackflow.errors import ConfigError
from trackflow.events import list_events, write_event
from trackflow.run import tracking_plots
from trackflow.run.reconstruct import ReconstructConfig, reconstruct
from trackflow.run.report import EXIT_OK
from trackflow.run.tracking_plots import (
    EFFICIENCY_ETA_FILE,
    EFFICIENCY_JSON_FILE,
    EFFICIENCY_PT_FILE,
    EVENT_DISPLAY_FILE,
    STAGE_TIMES_FILE,
    TRUTH_FILES,
    PlotSettings,
)

pytestmark = pytest.mark.sim

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TRUTH_PICTURES = (EFFICIENCY_PT_FILE, EFFICIENCY_ETA_FILE, EVENT_DISPLAY_FILE)


@pytest.fixture(scope="module")
def events_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One simulated event with truth (detector: the shared file, else derived from pyacts)."""
    need_acts()
    from trackflow.events.simulation import SimulationConfig
    from trackflow.run.parallel_simulation import simulate

    out = tmp_path_factory.mktemp("events")
    config = SimulationConfig(
        seed=7, pileup=5, particles_per_vertex=10, pt_min=0.3, pt_max=5.0, noise_fraction=0.15
    )
    simulate(config, out, 1, progress=False)
    return out


def run(input_dir: Path, out_dir: Path, **options: object):
    return reconstruct(
        ReconstructConfig(input_dir=input_dir, out_dir=out_dir, mode="direct", progress=False, **options)
    )


@pytest.fixture(scope="module")
def truth_run(events_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    return run(events_dir, tmp_path_factory.mktemp("out"))


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path.name} not written"
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_SIGNATURE), f"{path.name} is not a PNG"
    pixels = image.imread(path)  # decodes the whole file: a truncated PNG fails here
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert np.ptp(pixels[..., :3]) > 0, f"{path.name} is blank"


def cli_score(events_dir: Path, submission: Path, *extra: str) -> dict:
    result = CliRunner().invoke(main, ["score", str(events_dir), str(submission), *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def bins_sum(curve: dict, low_min: float = -np.inf) -> tuple[int, int]:
    """(matched, reconstructable) of the bins whose lower edge is >= low_min, plus the overflow."""
    rows = [b for b in curve["bins"] if b["low"] >= low_min]
    matched = sum(b["matched"] for b in rows) + curve["overflow"]["matched"]
    total = sum(b["reconstructable"] for b in rows) + curve["overflow"]["reconstructable"]
    return matched, total


def test_a_run_with_truth_writes_every_picture_beside_the_report(truth_run) -> None:
    out = truth_run.report_path.parent
    assert truth_run.exit_code == EXIT_OK
    for name in (*TRUTH_PICTURES, STAGE_TIMES_FILE):
        assert_png(out / name)
    listed = truth_run.report["outputs"]["plots"]
    assert sorted(Path(p).name for p in listed) == sorted([*TRUTH_FILES, STAGE_TIMES_FILE])
    assert json.loads(truth_run.report_path.read_text())["outputs"]["plots"] == listed
    # the terminal summary (what `make run` prints) names every file
    lines = truth_run.summary_lines()
    assert all(f"plot: {p}" in lines for p in listed)


def test_the_binned_efficiency_adds_up_to_trackflow_score(truth_run, events_dir: Path) -> None:
    out = truth_run.report_path.parent
    binned = json.loads((out / EFFICIENCY_JSON_FILE).read_text())
    scored = cli_score(events_dir, truth_run.submission_path)
    counts = scored["counts"]
    assert counts["reconstructable"] >= 20, "too few particles for the comparison to mean anything"
    assert binned["events"] == [r.event_id for r in list_events(events_dir)]

    # eta: the headline denominator (pT > 1 GeV, >= 5 hits), every particle in a bin or the overflow
    eta = binned["eta"]
    assert eta["pt_min_gev"] == 1.0 and eta["underflow"]["reconstructable"] == 0
    assert bins_sum(eta) == (counts["matched"], counts["reconstructable"])
    assert eta["total"]["efficiency"] == pytest.approx(scored["efficiency"])
    # pT: the bins from 1 GeV up are the same particles; from 0.5 GeV up, efficiency_pt05's
    pt = binned["pt"]
    assert bins_sum(pt, 1.0) == (counts["matched"], counts["reconstructable"])
    assert bins_sum(pt, 0.5) == (counts["matched_pt05"], counts["reconstructable_pt05"])

    for curve in (eta, pt):
        for row in curve["bins"]:
            assert 0 <= row["matched"] <= row["reconstructable"]
            if row["reconstructable"] == 0:
                assert row["efficiency"] is None
                continue
            assert row["efficiency"] == pytest.approx(row["matched"] / row["reconstructable"])
            # a 68 % interval around the efficiency, inside [0, 1], never of zero width
            assert row["error_low"] >= 0 and row["error_high"] >= 0
            assert row["error_low"] + row["error_high"] > 0
            assert row["efficiency"] - row["error_low"] >= 0
            assert row["efficiency"] + row["error_high"] <= 1


def test_score_writes_the_same_efficiency_plots_when_asked(
    truth_run, events_dir: Path, tmp_path: Path
) -> None:
    plots = tmp_path / "plots"
    scored = cli_score(events_dir, truth_run.submission_path, "--plots", str(plots))
    assert sorted(Path(p).name for p in scored["plots"]) == sorted(TRUTH_FILES)
    for name in TRUTH_PICTURES:
        assert_png(plots / name)
    ours = json.loads((plots / EFFICIENCY_JSON_FILE).read_text())
    assert ours == json.loads((truth_run.report_path.parent / EFFICIENCY_JSON_FILE).read_text())
    # without --plots: no files, no "plots" key, the same numbers
    plain = cli_score(events_dir, truth_run.submission_path)
    assert "plots" not in plain and plain["efficiency"] == scored["efficiency"]


def test_a_run_without_truth_writes_only_the_stage_times(truth_run, events_dir: Path, tmp_path: Path) -> None:
    hits_only = tmp_path / "hits_only"
    for ref in list_events(events_dir):
        write_event(ref.load(("hits",)).hits_only(), hits_only)
    # over the output of the run with truth: its truth pictures must not stay behind as this run's
    out = tmp_path / "out"
    shutil.copytree(truth_run.report_path.parent, out)
    report = run(hits_only, out, overwrite=True)
    assert report.report["efficiency"] is None
    assert [Path(p).name for p in report.report["outputs"]["plots"]] == [STAGE_TIMES_FILE]
    assert_png(out / STAGE_TIMES_FILE)
    for name in TRUTH_FILES:
        assert not (out / name).exists(), f"{name} written or left behind without truth"


def test_a_picture_that_cannot_be_written_is_a_warning_not_a_failed_run(
    events_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    (out / EFFICIENCY_PT_FILE).mkdir(parents=True)  # a directory where the PNG should go
    with caplog.at_level(logging.WARNING, logger=tracking_plots.__name__):
        report = run(events_dir, out)
    assert report.exit_code == EXIT_OK and report.report["efficiency"] is not None
    assert any(EFFICIENCY_PT_FILE in r.getMessage() for r in caplog.records), caplog.text
    names = [Path(p).name for p in report.report["outputs"]["plots"]]
    assert EFFICIENCY_PT_FILE not in names
    for name in (EFFICIENCY_ETA_FILE, EVENT_DISPLAY_FILE, STAGE_TIMES_FILE):
        assert name in names
        assert_png(out / name)


def test_the_stage_times_are_the_mean_median_and_slowest_event() -> None:
    per_event = [
        {"event_id": i, "timings": {"load": 0.1, "gnn": float(seconds)}}
        for i, seconds in enumerate([3.0, 1.0, 2.0, 9.0])
    ]
    bars = tracking_plots.stage_seconds(per_event)
    assert bars == {
        "mean of 4 events": {"load": pytest.approx(0.1), "gnn": pytest.approx(3.75)},
        "median event (2)": {"load": 0.1, "gnn": 2.0},
        "slowest event (3)": {"load": 0.1, "gnn": 9.0},
    }
    assert tracking_plots.stage_seconds([]) == {}


@pytest.mark.parametrize("bins", [[1.0], [2.0, 1.0], [0.0, float("inf")]])
def test_bad_bin_edges_are_refused_naming_the_setting(bins: list[float]) -> None:
    with pytest.raises(ConfigError, match=r"plots\.pt_bins"):
        PlotSettings(pt_bins=tuple(bins))
