"""TrackML files in and out: the 9 real Kaggle events, write/read round trips, lazy listing,
submission CSV and Parquet track outputs, and the ``inspect`` summaries."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trackflow.errors import EventFileError
from trackflow.events import (
    VOLUME_IDS,
    Event,
    iter_events,
    list_events,
    read_event,
    read_submission,
    write_event,
    write_submission,
)
from trackflow.events import trackml as trackml_module
from trackflow.events.submission import read_tracks_parquet, write_tracks_parquet
from trackflow.events.summary import summarize_event, summarize_events

REAL_EVENT_IDS = [1001, 1003, 1005, 1009, 1010, 1012, 1013, 1018, 1020]


@dataclass
class RawCounts:
    """What the files say, read without trackflow: lines counted in the decompressed bytes,
    values parsed by pandas' C parser."""

    hits: int
    particles: int
    sum_nhits: int
    hit_ids: np.ndarray
    first_hit: list[float]
    volumes: set[int]


def raw_counts(directory: Path, event_id: int) -> RawCounts:
    hits_path = directory / f"event{event_id:09d}-hits.csv.gz"
    particles_path = directory / f"event{event_id:09d}-particles.csv.gz"
    hits_lines = gzip.decompress(hits_path.read_bytes()).count(b"\n") - 1  # minus the header
    particle_lines = gzip.decompress(particles_path.read_bytes()).count(b"\n") - 1
    hits = pd.read_csv(hits_path, engine="c")
    assert list(hits.columns) == ["hit_id", "x", "y", "z", "volume_id", "layer_id", "module_id"]
    assert len(hits) == hits_lines
    particles = pd.read_csv(particles_path, engine="c")
    assert len(particles) == particle_lines
    return RawCounts(
        hits=hits_lines,
        particles=particle_lines,
        sum_nhits=int(particles["nhits"].sum()),
        hit_ids=hits["hit_id"].to_numpy(),
        first_hit=hits.iloc[0][["x", "y", "z"]].tolist(),
        volumes=set(hits["volume_id"].unique().tolist()),
    )


@pytest.fixture(scope="module")
def real_counts(trackml_dir: Path) -> dict[int, RawCounts]:
    return {event_id: raw_counts(trackml_dir, event_id) for event_id in REAL_EVENT_IDS}


# --------------------------------------------------------------------------------------------
# the 9 real events
# --------------------------------------------------------------------------------------------


def test_real_directory_lists_the_9_events(trackml_dir: Path) -> None:
    refs = list_events(trackml_dir)
    assert [ref.event_id for ref in refs] == REAL_EVENT_IDS
    assert all(set(ref.paths) == {"hits", "particles"} for ref in refs)  # no truth, no cells
    assert all(ref.size_bytes() > 1_000_000 for ref in refs)


def test_all_real_events_match_their_files(trackml_dir: Path, real_counts: dict[int, RawCounts]) -> None:
    events = list(iter_events(trackml_dir))
    assert [event.event_id for event in events] == REAL_EVENT_IDS
    for event in events:
        raw = real_counts[event.event_id]
        assert event.n_hits == raw.hits
        assert 90_000 <= event.n_hits <= 115_000  # a full event: about 100k hits
        assert event.particles is not None and len(event.particles) == raw.particles
        assert int(event.particles["nhits"].sum()) == raw.sum_nhits
        assert event.truth is None and event.cells is None
        hit_ids = event.hits["hit_id"].to_numpy()
        assert np.array_equal(hit_ids, raw.hit_ids)
        assert np.array_equal(hit_ids, np.arange(1, raw.hits + 1))  # TrackML numbers hits 1..N
        assert set(event.hits["volume_id"].unique()) == raw.volumes
        assert raw.volumes <= set(VOLUME_IDS)
        first = event.hits.iloc[0]
        assert [first.x, first.y, first.z] == pytest.approx(raw.first_hit)
        assert event.hits.dtypes["hit_id"] == np.int64
        assert event.hits.dtypes["x"] == np.float32
        assert event.hits.dtypes["volume_id"] == np.int32
        r = np.hypot(event.hits["x"].to_numpy(np.float64), event.hits["y"].to_numpy(np.float64))
        np.testing.assert_allclose(event.hits["r"].to_numpy(), r, rtol=1e-6)
        assert event.source == trackml_dir / f"event{event.event_id:09d}-hits.csv.gz"


def test_known_counts_of_event_1001(trackml_dir: Path) -> None:
    """The figures recorded in ../shared/data/trackml/SOURCE.md."""
    event = read_event(trackml_dir / "event000001001-hits.csv.gz", parts=("hits", "particles"))
    assert event.n_hits == 93_680
    assert event.particles is not None and len(event.particles) == 8_915
    assert int(event.particles["nhits"].sum()) == 76_210


def test_real_event_round_trip(trackml_dir: Path, tmp_path: Path) -> None:
    event = read_event(trackml_dir / "event000001009")
    written = write_event(event, tmp_path)
    assert sorted(written) == ["hits", "particles"]
    again = read_event(tmp_path / "event000001009")
    # TrackML files hold 6 significant digits, which the writer keeps: the round trip is exact
    pd.testing.assert_frame_equal(again.hits, event.hits)
    pd.testing.assert_frame_equal(again.particles, event.particles)
    # and the written file is byte-identical when written again (gzip without a timestamp)
    first = written["hits"].read_bytes()
    write_event(again, tmp_path)
    assert written["hits"].read_bytes() == first


# --------------------------------------------------------------------------------------------
# write/read round trip of a full event (hits, cells, truth, particles)
# --------------------------------------------------------------------------------------------


def synthetic_event(event_id: int, n_hits: int = 500, seed: int = 0) -> Event:
    rng = np.random.default_rng(seed)
    # 6 significant digits, as in TrackML files; inside the detector envelope (r <= 990 mm)
    x, y, z = (np.round(rng.uniform(-700, 700, n_hits), 2).astype(np.float32) for _ in range(3))
    hits = pd.DataFrame(
        {
            "hit_id": np.arange(1, n_hits + 1, dtype=np.int64),
            "x": x,
            "y": y,
            "z": z,
            "volume_id": rng.choice(VOLUME_IDS, n_hits).astype(np.int32),
            # modules every TrackML volume has: layers 2 and 4, module ids 1-98
            "layer_id": rng.choice([2, 4], n_hits).astype(np.int32),
            "module_id": rng.integers(1, 99, n_hits).astype(np.int32),
        }
    )
    particle_ids = np.array([4503668346847232 + 7 * i for i in range(40)], dtype=np.int64)
    owner = np.where(rng.random(n_hits) < 0.2, 0, rng.choice(particle_ids, n_hits))
    truth = pd.DataFrame(
        {
            "hit_id": hits["hit_id"],
            "particle_id": owner,
            "tx": x,
            "ty": y,
            "tz": z,
            "tpx": np.round(rng.normal(size=n_hits), 4).astype(np.float32),
            "tpy": np.round(rng.normal(size=n_hits), 4).astype(np.float32),
            "tpz": np.round(rng.normal(size=n_hits), 4).astype(np.float32),
            "weight": np.where(owner != 0, 1e-5, 0.0),
        }
    )
    particles = pd.DataFrame(
        {
            "particle_id": particle_ids,
            "vx": np.float32(0.01),
            "vy": np.float32(-0.02),
            "vz": np.round(rng.normal(0, 50, 40), 3).astype(np.float32),
            "px": np.round(rng.normal(size=40), 4).astype(np.float32),
            "py": np.round(rng.normal(size=40), 4).astype(np.float32),
            "pz": np.round(rng.normal(size=40), 4).astype(np.float32),
            "q": rng.choice([-1, 1], 40).astype(np.int32),
            "nhits": np.array([(owner == p).sum() for p in particle_ids], dtype=np.int32),
            "particle_type": rng.choice([11, 13, 211], 40),  # extra columns travel along
        }
    )
    cells = pd.DataFrame(
        {
            "hit_id": np.repeat(hits["hit_id"].to_numpy(), 2),
            "ch0": rng.integers(0, 1000, 2 * n_hits).astype(np.int32),
            "ch1": rng.integers(0, 1000, 2 * n_hits).astype(np.int32),
            "value": np.round(rng.random(2 * n_hits), 5).astype(np.float32),
        }
    )
    return Event(event_id, hits, cells=cells, truth=truth, particles=particles)


@pytest.mark.parametrize("compress", [True, False])
def test_full_event_round_trip(tmp_path: Path, compress: bool) -> None:
    event = synthetic_event(42)
    written = write_event(event, tmp_path, compress=compress)
    suffix = ".csv.gz" if compress else ".csv"
    assert {p.name for p in written.values()} == {f"event000000042-{part}{suffix}" for part in written}
    again = read_event(written["truth"])  # any one of the event's files names the event
    for part in ("cells", "truth", "particles"):
        pd.testing.assert_frame_equal(getattr(again, part), getattr(event, part), check_dtype=False)
    pd.testing.assert_frame_equal(again.hits[event.hits.columns], event.hits)
    assert again.truth is not None and again.truth.dtypes["weight"] == np.float64
    assert list(again.hits.columns[-3:]) == ["r", "phi", "eta"]
    only_hits = read_event(tmp_path / "event000000042", parts=("hits",))
    assert only_hits.truth is None and only_hits.particles is None and only_hits.cells is None


def test_float32_values_survive_to_six_significant_digits(tmp_path: Path) -> None:
    event = synthetic_event(3)
    noisy = event.hits.assign(x=event.hits["x"] + np.float32(1e-3 / 3))
    written = write_event(Event(3, noisy), tmp_path)
    again = read_event(written["hits"])
    assert again.hits["x"].to_numpy() == pytest.approx(noisy["x"].to_numpy(), rel=1e-6, abs=1e-3)


# --------------------------------------------------------------------------------------------
# lazy listing
# --------------------------------------------------------------------------------------------


def test_ten_thousand_events_are_listed_without_reading_any(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for event_id in range(10_000):
        (tmp_path / f"event{event_id:09d}-hits.csv.gz").touch()
        if event_id % 2:
            (tmp_path / f"event{event_id:09d}-particles.csv").touch()
    (tmp_path / "README.txt").touch()  # other files are ignored
    reads: list[Path] = []
    real_read_csv = trackml_module.read_csv

    def counting_read_csv(path: Path, part: str, *args: object) -> pd.DataFrame:
        reads.append(path)
        return real_read_csv(path, part, *args)

    monkeypatch.setattr(trackml_module, "read_csv", counting_read_csv)
    refs = list_events(tmp_path)
    assert len(refs) == 10_000
    assert [ref.event_id for ref in refs[:3]] == [0, 1, 2]
    assert refs[-1].event_id == 9_999
    assert set(refs[1].paths) == {"hits", "particles"}
    selected = list_events(tmp_path, event_ids=[17, 4242])
    assert [ref.event_id for ref in selected] == [17, 4242]
    lazy = iter_events(tmp_path)
    assert reads == []  # nothing read while listing, nor by creating the iterator
    # the files are empty: reading one proves it would have failed
    with pytest.raises(EventFileError, match="file is empty"):
        next(lazy)
    assert reads == [tmp_path / "event000000000-hits.csv.gz"]


# --------------------------------------------------------------------------------------------
# submission CSV and Parquet tracks
# --------------------------------------------------------------------------------------------


def tracks_frame(event_id: int, n_hits: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "event_id": np.full(n_hits, event_id, dtype=np.int64),
            "hit_id": rng.permutation(np.arange(1, n_hits + 1)).astype(np.int64),
            "track_id": rng.integers(0, 50, n_hits).astype(np.int64),
        }
    )


def test_submission_round_trip(tmp_path: Path) -> None:
    frames = [tracks_frame(1001, 300, 1), tracks_frame(1003, 200, 2)]
    path = write_submission(tmp_path / "out" / "submission.csv", iter(frames))
    assert path.read_text().splitlines()[0] == "event_id,hit_id,track_id"
    assert len(path.read_text().splitlines()) == 501
    assert sorted(p.name for p in path.parent.iterdir()) == ["submission.csv"]  # no temporary left
    back = read_submission(path)
    pd.testing.assert_frame_equal(back, pd.concat(frames, ignore_index=True))
    assert (back.dtypes == np.int64).all()


def test_parquet_tracks_round_trip(tmp_path: Path) -> None:
    tracks = pd.concat([tracks_frame(7, 1000, 3), tracks_frame(8, 10, 4)], ignore_index=True)
    tracks["track_id"] = tracks["track_id"].astype(np.int32)  # stored as int64 whatever comes in
    path = write_tracks_parquet(tmp_path / "batch-00001.parquet", tracks.assign(extra=1.0))
    back = read_tracks_parquet(path)
    assert list(back.columns) == ["event_id", "hit_id", "track_id"]
    assert (back.dtypes == np.int64).all()
    pd.testing.assert_frame_equal(back, tracks.astype(np.int64))
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(path.read_bytes()[:100])
    with pytest.raises(EventFileError, match=r"broken\.parquet: unreadable tracks file"):
        read_tracks_parquet(broken)


# --------------------------------------------------------------------------------------------
# inspect
# --------------------------------------------------------------------------------------------


def test_summaries_of_the_real_events(trackml_dir: Path, real_counts: dict[int, RawCounts]) -> None:
    summaries = summarize_events(trackml_dir, event_ids=[1001, 1020])
    assert [s["event_id"] for s in summaries] == [1001, 1020]
    for summary in summaries:
        raw = real_counts[summary["event_id"]]
        assert summary["hits"] == raw.hits
        assert summary["particles"] == raw.particles
        assert summary["noise_fraction"] == pytest.approx(1 - raw.sum_nhits / raw.hits, abs=1e-6)
        assert 0.1 < summary["noise_fraction"] < 0.25  # about 15-20 % noise in TrackML
        assert summary["noise_from"] == "particles.nhits"
        assert sum(summary["hits_per_volume"].values()) == raw.hits
        assert set(summary["hits_per_volume"]) == raw.volumes
    assert json.loads(json.dumps(summaries))[0]["hits_per_volume"]["8"] > 0


def test_summary_with_truth_and_bad_events(tmp_path: Path) -> None:
    event = synthetic_event(5)
    summary = summarize_event(event)
    assert summary["noise_from"] == "truth"
    assert summary["noise_fraction"] == pytest.approx((event.truth["particle_id"] == 0).mean(), abs=1e-6)
    assert summarize_event(Event(6, event.hits))["noise_fraction"] is None
    write_event(event, tmp_path)
    write_event(synthetic_event(6), tmp_path)
    (tmp_path / "event000000006-particles.csv.gz").write_bytes(b"")
    with pytest.raises(EventFileError, match=r"event000000006-particles\.csv\.gz: file is empty"):
        summarize_events(tmp_path)
    reported = summarize_events(tmp_path, errors="report")
    assert reported[0]["hits"] == 500
    assert reported[1]["event_id"] == 6
    assert reported[1]["error"].endswith("event000000006-particles.csv.gz: file is empty (0 bytes)")
