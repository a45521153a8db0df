"""``trackflow reconstruct --set KEY=VALUE``: the value reaches the run and report.json says so.

The events are synthetic (straight tracks through the four pixel-barrel layers), so these tests
need nothing beside the repository.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from test_pipeline_settings import MANIFEST_FILTER_CUT, models_with_other_values

from trackflow.cli import main
from trackflow.events import Event, write_event

#: pixel barrel (volume 8): layer id -> radius (mm), REFERENCE.md §3
BARREL_LAYERS = {2: 32.0, 4: 72.0, 6: 116.0, 8: 172.0}


def write_synthetic_events(out_dir: Path, count: int = 2, tracks: int = 30, first: int = 7000) -> Path:
    """``count`` hits-only events of ``tracks`` straight tracks each (|eta| < 0.8, vertices
    within 20 mm of z = 0), one hit per pixel-barrel layer; returns ``out_dir``."""
    rng = np.random.default_rng(0)
    for event_id in range(first, first + count):
        phi = rng.uniform(-np.pi, np.pi, tracks)
        cot_theta = np.sinh(rng.uniform(-0.8, 0.8, tracks))
        z0 = rng.uniform(-20.0, 20.0, tracks)
        rows = []
        for layer, r in BARREL_LAYERS.items():
            rows.append(
                pd.DataFrame(
                    {
                        "x": r * np.cos(phi),
                        "y": r * np.sin(phi),
                        "z": z0 + r * cot_theta,
                        "volume_id": 8,
                        "layer_id": layer,
                        "module_id": 1,
                    }
                )
            )
        hits = pd.concat(rows, ignore_index=True)
        hits.insert(0, "hit_id", np.arange(1, len(hits) + 1, dtype=np.int64))
        hits = hits.astype(
            {
                "x": "float32",
                "y": "float32",
                "z": "float32",
                "volume_id": "int32",
                "layer_id": "int32",
                "module_id": "int32",
            }
        )
        write_event(Event(event_id=event_id, hits=hits), out_dir)
    return out_dir


@pytest.fixture(scope="module")
def events_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_events(tmp_path_factory.mktemp("events"))


def reconstruct(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["reconstruct", *args, "--mode", "direct", "--no-progress"])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_set_changes_the_radius_report_json_records(events_dir: Path, tmp_path: Path) -> None:
    models = models_with_other_values(
        tmp_path / "models", graph_building={"radius": 0.12}, filter={"cut": MANIFEST_FILTER_CUT}
    )
    out = tmp_path / "run"
    code, _, stderr = reconstruct(
        str(events_dir),
        "--out",
        str(out),
        "--models",
        str(models),
        "--set",
        "pipeline.graph_building.radius=0.09",
        "--set",
        "pipeline.labelling.min_hits=4",
    )
    assert code == 0, stderr
    pipeline = json.loads((out / "report.json").read_text())["pipeline"]
    stages, sources = pipeline["stages"], pipeline["sources"]
    assert stages["graph_building"]["radius"] == 0.09
    assert sources["pipeline.graph_building.radius"] == "cli"
    assert stages["labelling"]["min_hits"] == 4
    assert stages["filter"]["cut"] == MANIFEST_FILTER_CUT
    assert sources["pipeline.filter.cut"] == "manifest"
    # enough to rebuild the run: the model files' sha256, the features and their scales
    assert set(pipeline["model_files"]) == {"embedding", "filter", "gnn"}
    assert all(len(f["sha256"]) == 64 for f in pipeline["model_files"].values())
    assert pipeline["features"]["names"] == ["r", "cos_phi", "sin_phi", "z"]
    assert pipeline["features"]["scale"]["r"] == 1000.0


def test_a_set_value_must_match_on_resume(events_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, _, stderr = reconstruct(str(events_dir), "--out", str(out), "--set", "pipeline.filter.cut=0.3")
    assert code == 0, stderr
    code, _, stderr = reconstruct(str(events_dir), "--out", str(out), "--set", "pipeline.filter.cut=0.25")
    assert code == 2
    assert "pipeline" in stderr


@pytest.mark.parametrize(
    ("assignment", "named"),
    [
        ("pipeline.graph_building.radiuz=0.09", "--set pipeline.graph_building.radiuz: unknown setting"),
        ("radius", "--set 'radius': expected KEY=VALUE"),
        ("pipeline.filter.cut=tight", "pipeline.filter.cut: expected float"),
    ],
)
def test_a_bad_set_is_one_line_naming_the_key(
    events_dir: Path, tmp_path: Path, assignment: str, named: str
) -> None:
    code, _, stderr = reconstruct(str(events_dir), "--out", str(tmp_path / "run"), "--set", assignment)
    assert code == 2
    assert stderr.count("\n") == 1 and named in stderr
    assert not (tmp_path / "run").exists()
