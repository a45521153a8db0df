"""reconstruct(): outputs in event order, the same tracks in every mode, resuming and --overwrite.

Also home of the helpers the workflow tests share (small events cut out of a real TrackML event,
a small untrained pipeline, one 2-worker LocalCluster for the whole session): test_executors.py
and test_reliability.py import them from here.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trackflow import config
from trackflow.errors import ConfigError
from trackflow.events import Event, list_events, read_submission, write_event
from trackflow.events.trackml import EventRef
from trackflow.pipeline.pipeline import Pipeline
from trackflow.run.batching import AutoBatching, count_hits, make_batches
from trackflow.run.outputs import MANIFEST_NAME
from trackflow.run.reconstruct import ReconstructConfig, reconstruct
from trackflow.run.report import EXIT_OK

#: an untrained pipeline, small enough that an event of a few hundred hits takes ~0.1 s; its
#: tracks are noise, but deterministic — all these tests need
TINY_PIPELINE = functools.partial(Pipeline.random_init, hidden=32, gnn_hidden=16, seed=7)
HIT_COLUMNS = ["hit_id", "x", "y", "z", "volume_id", "layer_id", "module_id"]
FIRST_EVENT = 5000


# --------------------------------------------------------------------------- shared helpers
@functools.cache
def _source_hits(trackml_dir: Path) -> pd.DataFrame:
    return list_events(trackml_dir)[0].load(("hits",)).hits


def small_hits(trackml_dir: Path, index: int, width: float = 0.04) -> pd.DataFrame:
    """The pixel hits of one phi slice (``width`` rad) of a real event: a few hundred hits, a
    different slice for each ``index``, hit ids as in the real file."""
    hits = _source_hits(trackml_dir)
    low = -np.pi + (index % int(2 * np.pi / width)) * width
    keep = (hits["phi"] >= low) & (hits["phi"] < low + width) & hits["volume_id"].isin([7, 8, 9])
    return hits.loc[keep, HIT_COLUMNS].reset_index(drop=True)


def write_small_events(
    trackml_dir: Path, out_dir: Path, count: int, first: int = FIRST_EVENT, width: float = 0.04
) -> list[int]:
    """Write ``count`` small hits-only events (ids ``first``...) to ``out_dir``; their ids."""
    ids = list(range(first, first + count))
    for i, event_id in enumerate(ids):
        write_event(Event(event_id=event_id, hits=small_hits(trackml_dir, i, width)), out_dir)
    return ids


_CLUSTER: dict[str, object] = {}


@contextlib.contextmanager
def shared_local_client() -> Iterator[object]:
    """One 2-worker LocalCluster (trackflow.cluster.open) for every workflow test module:
    the first user starts it, the last one closes it."""
    from trackflow.cluster import open_cluster

    if "handle" not in _CLUSTER:
        stack = contextlib.ExitStack()
        _CLUSTER["handle"] = stack.enter_context(open_cluster("local", 2, 1))
        _CLUSTER["stack"] = stack
        _CLUSTER["users"] = 0
    _CLUSTER["users"] = int(_CLUSTER["users"]) + 1  # type: ignore[call-overload]
    try:
        yield _CLUSTER["handle"].client  # type: ignore[attr-defined]
    finally:
        _CLUSTER["users"] = int(_CLUSTER["users"]) - 1  # type: ignore[call-overload]
        if _CLUSTER["users"] == 0:
            _CLUSTER.pop("stack").close()  # type: ignore[attr-defined]
            _CLUSTER.clear()


def run(input_dir: Path, out_dir: Path, **options: object):
    """reconstruct() with the tiny pipeline, no progress bar, batches of 2 unless told."""
    options.setdefault("batch_size", 2)
    settings = {"pipeline_loader": TINY_PIPELINE, "progress": False, **options}
    return reconstruct(ReconstructConfig(input_dir=input_dir, out_dir=out_dir, **settings))


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def dask_client():
    with shared_local_client() as client:
        yield client


@pytest.fixture(scope="module")
def events_dir(trackml_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("events")
    write_small_events(trackml_dir, directory, 6)
    return directory


@pytest.fixture(scope="module")
def direct_run(events_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("direct")
    return run(events_dir, out, mode="direct")


# --------------------------------------------------------------------------- batching
def test_count_hits_counts_the_rows_of_the_hits_file(events_dir: Path) -> None:
    for ref in list_events(events_dir):
        assert count_hits(ref) == len(ref.load(("hits",)).hits)


def test_batches_by_events_and_by_hits_keep_event_order(events_dir: Path) -> None:
    refs = list_events(events_dir)
    by_count = make_batches(refs, batch_size=4)
    assert [b.event_ids for b in by_count] == [
        tuple(r.event_id for r in refs[:4]),
        tuple(r.event_id for r in refs[4:]),
    ]
    hits = {r.event_id: count_hits(r) for r in refs}
    limit = max(hits.values()) * 2
    by_hits = make_batches(refs, max_hits=limit)
    assert [e for b in by_hits for e in b.event_ids] == [r.event_id for r in refs]
    assert all(sum(hits[e] for e in b.event_ids) <= limit for b in by_hits)
    assert all(b.hits == sum(hits[e] for e in b.event_ids) for b in by_hits)
    # an event bigger than the limit is a batch of its own
    assert all(len(b) == 1 for b in make_batches(refs, max_hits=1))
    with pytest.raises(ConfigError, match=r"batch_size: must be >= 1, got 0"):
        make_batches(refs, batch_size=0)
    with pytest.raises(ConfigError, match=r"max_hits: must be >= 1, got 0"):
        make_batches(refs, max_hits=0)


def test_auto_batches_grow_with_small_events_and_keep_every_worker_busy(events_dir: Path) -> None:
    """``batch_size="auto"``: many small events share a batch (Dask's fixed cost per batch is
    then ~1 % of it), full events go one or two at a time, and a few events are spread out."""
    small = [EventRef(i, {}) for i in range(1000)]  # the study's ~1.3k-hit events
    batches = make_batches(small, batch_size="auto", hits_of=lambda ref: 1_300)
    # 200k hits a batch: 153 events; 1,000 events need 7 batches, cut evenly (not 6 x 153 + 82)
    assert [len(b) for b in batches] == [143, 143, 143, 142, 143, 143, 143]
    assert [e for b in batches for e in b.event_ids] == list(range(1000))
    # on 2 worker slots: 8 batches of 125, so neither worker runs the last one alone
    on_two = make_batches(small, batch_size="auto", hits_of=lambda ref: 1_300, slots=2)
    assert [len(b) for b in on_two] == [125] * 8
    full = [EventRef(i, {}) for i in range(20)]
    assert {len(b) for b in make_batches(full, batch_size="auto", hits_of=lambda ref: 100_000)} == {2}
    sizes = AutoBatching(hits_per_batch=50_000, max_events=10, min_batches=1).sizes([1_300] * 1000)
    assert sizes == [10] * 100
    # 6 events: never fewer than min_batches batches, so a small run still spreads out
    refs = list_events(events_dir)
    with config.set(**{"workflow.auto_batch.min_batches": 4}):
        few = make_batches(refs, batch_size="auto")
    assert len(few) == 4
    assert [e for b in few for e in b.event_ids] == [r.event_id for r in refs]
    with pytest.raises(ConfigError, match="'auto'"):
        make_batches(refs, batch_size="many")
    with pytest.raises(ConfigError, match=r"auto_batch\.min_batches"):
        AutoBatching(min_batches=0)


# --------------------------------------------------------------------------- outputs
def test_direct_run_writes_every_hit_once_in_event_order(events_dir: Path, direct_run) -> None:
    report = direct_run
    assert report.exit_code == EXIT_OK
    submission = read_submission(report.submission_path)
    ids = [r.event_id for r in list_events(events_dir)]
    assert list(pd.unique(submission["event_id"])) == ids
    for ref in list_events(events_dir):
        hits = ref.load(("hits",)).hits
        rows = submission[submission["event_id"] == ref.event_id]
        assert sorted(rows["hit_id"]) == sorted(hits["hit_id"])
    written = json.loads(report.report_path.read_text())
    assert written["events"] == {"total": 6, "done": 6, "failed": 0, "resumed": 0, "processed": 6}
    assert written["failed_events"] == []
    assert {e["event_id"] for e in written["per_event"]} == set(ids)
    assert set(written["stages"]) == {"load", "embedding", "graph_building", "filter", "gnn", "labelling"}
    assert sum(s["share"] for s in written["stages"].values()) == pytest.approx(1.0)
    assert written["throughput"]["events_per_s"] > 0
    assert written["hits"] == len(submission)
    assert written["tracks"] == sum(int(g["track_id"].nunique()) for _, g in submission.groupby("event_id"))
    assert written["latency_s"]["p50"] <= written["latency_s"]["p99"]
    assert written["network"]["scheduler_worker_rtt_s"] is None  # direct: no network


def test_fused_and_staged_give_the_direct_submission(
    events_dir: Path, direct_run, dask_client, tmp_path: Path
) -> None:
    expected = direct_run.submission_path.read_bytes()
    for mode in ("fused", "staged"):
        html = tmp_path / f"{mode}.html"
        report = run(
            events_dir,
            tmp_path / mode,
            mode=mode,
            client=dask_client,
            max_in_flight=2,
            performance_report=html,
        )
        assert "Dask Performance Report" in html.read_text()
        assert report.exit_code == EXIT_OK, report.report["failed_events"]
        assert report.submission_path.read_bytes() == expected, mode
        written = report.report
        assert written["mode"] == mode and written["events"]["done"] == 6
        assert written["n_workers"] == 2
        assert written["network"]["scheduler_worker_rtt_s"]["p50"] > 0
        assert written["network"]["bytes_between_workers"] >= 0
        assert sum(w["events"] for w in written["workers"]["per_worker"].values()) == 6
        assert sum(w["batches"] for w in written["workers"]["per_worker"].values()) >= 3
        assert len(written["per_event"]) == 6


def test_auto_batches_are_balanced_over_the_clusters_worker_threads(
    events_dir: Path, direct_run, dask_client, tmp_path: Path
) -> None:
    """6 small events fit one batch's hit budget; on the 2-worker cluster they go as 2 batches of
    3, one per worker slot (not one batch with a worker idle), with the direct run's tracks."""
    with config.set(**{"workflow.auto_batch.min_batches": 1}):
        report = run(events_dir, tmp_path, mode="fused", client=dask_client, batch_size="auto")
    assert report.exit_code == EXIT_OK, report.report["failed_events"]
    assert report.report["batch_size"] == "auto" and report.report["batches"] == 2
    assert report.submission_path.read_bytes() == direct_run.submission_path.read_bytes()


def test_rerun_skips_finished_batches_and_overwrite_starts_afresh(events_dir: Path, tmp_path: Path) -> None:
    first = run(events_dir, tmp_path, mode="direct")
    leftover = tmp_path / "batches" / ".batch-000005000-0002-0.parquet.x1y2.tmp"  # a killed write
    leftover.write_bytes(b"half a file")
    again = run(events_dir, tmp_path, mode="direct")
    assert not leftover.exists()
    assert again.report["events"]["resumed"] == 6 and again.report["events"]["processed"] == 0
    assert again.submission_path.read_bytes() == first.submission_path.read_bytes()
    assert again.exit_code == EXIT_OK

    # a batch file damaged since: that batch (only) runs again
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    damaged = sorted(manifest["batches"].values(), key=lambda b: b["batch_id"])[1]
    (tmp_path / damaged["path"]).write_bytes(b"not parquet")
    repaired = run(events_dir, tmp_path, mode="direct")
    assert repaired.report["events"]["processed"] == len(damaged["event_ids"])
    assert repaired.submission_path.read_bytes() == first.submission_path.read_bytes()

    fresh = run(events_dir, tmp_path, mode="direct", overwrite=True)
    assert fresh.report["events"]["resumed"] == 0 and fresh.report["events"]["processed"] == 6
    assert fresh.submission_path.read_bytes() == first.submission_path.read_bytes()


def test_resuming_with_other_settings_is_refused(events_dir: Path, tmp_path: Path) -> None:
    run(events_dir, tmp_path, mode="direct", event_ids=[FIRST_EVENT])
    with pytest.raises(ConfigError, match=r"batch_size.*overwrite it"):
        run(events_dir, tmp_path, mode="direct", batch_size=3, event_ids=[FIRST_EVENT])


HOLD_LOCK = """
import sys, time
from trackflow.run.outputs import OutDirLock
lock = OutDirLock(sys.argv[1])
print("locked", flush=True)
time.sleep(300)
"""


@contextlib.contextmanager
def lock_held_by_another_process(out_dir: Path) -> Iterator[int]:
    """A process holding ``out_dir``'s lock, as a run in progress does; yields its pid."""
    import os
    import subprocess
    import sys

    out_dir.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parents[1]
    path = os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out_dir)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()  # type: ignore[union-attr]


def test_a_second_run_on_the_same_out_fails_at_once_naming_the_first(
    events_dir: Path, tmp_path: Path
) -> None:
    import socket

    with lock_held_by_another_process(tmp_path) as pid:
        with pytest.raises(ConfigError) as error:
            run(events_dir, tmp_path, mode="direct")
        message = str(error.value)
        host = socket.gethostname()
        assert message.startswith(
            f"out_dir {tmp_path}: in use by another trackflow run (pid {pid} on host {host}, since "
        ), message
        assert "\n" not in message
        assert not (tmp_path / MANIFEST_NAME).exists()  # nothing was touched
    # the holder was SIGKILLed: the kernel dropped its lock, no stale lock is left behind
    report = run(events_dir, tmp_path, mode="direct")
    assert report.exit_code == EXIT_OK
    # released at the end of a run: the next run on the directory resumes
    assert run(events_dir, tmp_path, mode="direct").report["events"]["resumed"] == 6


@pytest.mark.parametrize(
    ("owner", "taken_over"),
    [("dead-pid this-host", True), ("live-pid this-host", False), ("1 another-host", False)],
)
def test_without_flock_a_stale_lock_is_taken_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owner: str, taken_over: bool
) -> None:
    """File systems without flock (ENOLCK): the pid and host in the lock file decide."""
    import errno
    import fcntl
    import os
    import socket
    import subprocess
    import sys

    from trackflow.run import outputs

    def no_flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True
    )
    pids = {"dead-pid": dead.stdout.strip(), "live-pid": str(os.getppid())}
    pid, host = owner.split()
    host = socket.gethostname() if host == "this-host" else host
    (tmp_path / outputs.LOCK_NAME).write_text(f"{pids.get(pid, pid)} {host} 2026-01-01T00:00:00Z\n")
    if taken_over:
        lock = outputs.OutDirLock(tmp_path)
        assert (tmp_path / outputs.LOCK_NAME).read_text().split()[:2] == [str(os.getpid()), host]
        lock.release()
    else:
        with pytest.raises(ConfigError, match=rf"pid {pids.get(pid, pid)} on host {host}, since 2026"):
            outputs.OutDirLock(tmp_path)


def test_bad_options_name_the_option(events_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^mode sideways: choose one of"):
        ReconstructConfig(input_dir=events_dir, out_dir=tmp_path, mode="sideways")
    with pytest.raises(ConfigError, match=r"out_dir .*: must not be the input directory"):
        ReconstructConfig(input_dir=events_dir, out_dir=events_dir)


def test_efficiency_is_scored_when_the_events_have_truth(trackml_dir: Path, tmp_path: Path) -> None:
    """Truth is never read by the reconstruction, only afterwards to score the submission."""
    hits = small_hits(trackml_dir, 0)
    particle_ids = (np.arange(len(hits)) // 6 + 1).astype(np.int64)  # made-up particles of 6 hits
    zeros = np.zeros(len(hits))
    truth = pd.DataFrame(
        {"hit_id": hits["hit_id"], "particle_id": particle_ids, "tx": zeros, "ty": zeros, "tz": zeros}
        | {"tpx": zeros + 2.0, "tpy": zeros, "tpz": zeros, "weight": zeros + 1.0 / len(hits)}
    )
    ids = np.unique(particle_ids)
    ones = np.ones(len(ids))
    particles = pd.DataFrame(
        {"particle_id": ids, "vx": 0 * ones, "vy": 0 * ones, "vz": 0 * ones, "px": 2 * ones, "py": 0 * ones}
        | {"pz": 0 * ones, "q": np.ones(len(ids), np.int64), "nhits": np.bincount(particle_ids)[ids]}
    )
    write_event(Event(event_id=FIRST_EVENT, hits=hits, truth=truth, particles=particles), tmp_path / "in")
    report = run(tmp_path / "in", tmp_path / "out", mode="direct")
    efficiency = report.report["efficiency"]
    assert efficiency is not None and efficiency["counts"]["events"] == 1
    assert 0.0 <= efficiency["efficiency"] <= 1.0 and 0.0 <= efficiency["trackml_score"] <= 1.0
    assert any(line.startswith("efficiency:") for line in report.summary_lines())


def test_bad_model_files_are_refused_before_any_worker_starts(events_dir: Path, tmp_path: Path) -> None:
    from trackflow.errors import ModelFileError

    empty = tmp_path / "models"
    empty.mkdir()
    with pytest.raises(ModelFileError, match=r"manifest\.json"):
        reconstruct(ReconstructConfig(input_dir=events_dir, out_dir=tmp_path / "out", models_dir=empty))
    assert not (tmp_path / "out").exists()
