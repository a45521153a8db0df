"""No event lost or duplicated: bad input files, a worker SIGKILLed mid-run, the client killed
mid-run and the run resumed. Outputs are compared byte for byte with a clean run."""

from __future__ import annotations

import contextlib
import errno
import functools
import gzip
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask.config
import pandas as pd
import pytest
from conftest import require
from test_validation import gzip_bomb
from test_workflow import TINY_PIPELINE, run, shared_local_client, small_hits, write_small_events
from worker_faults import buggy_pipeline, hungry_pipeline

from trackflow import config
from trackflow.cluster import ClusterOptions, open_cluster
from trackflow.errors import OutputWriteError
from trackflow.events import Event, write_event
from trackflow.files import sha256_file
from trackflow.run.outputs import MANIFEST_NAME
from trackflow.run.report import EXIT_FAILED_EVENTS, EXIT_OK

HEADER = "hit_id,x,y,z,volume_id,layer_id,module_id\n"
GOOD_ROW = "1,30.5,2.0,3.0,8,2,1\n"


@pytest.fixture(scope="session")
def dask_client() -> Any:
    with shared_local_client() as client:
        yield client


# --------------------------------------------------------------------------- bad input catalogue
def _hits_csv(directory: Path, event_id: int) -> Path:
    return directory / f"event{event_id:09d}-hits.csv"


def _replace_hits(directory: Path, event_id: int, text: str) -> Path:
    (directory / f"event{event_id:09d}-hits.csv.gz").unlink()
    path = _hits_csv(directory, event_id)
    path.write_text(text)
    return path


def _build_catalogue(directory: Path, trackml_dir: Path) -> dict[int, tuple[str, str, str]]:
    """Two good events (7100, 7113), one far larger than the rest (7112), eleven broken files
    (7101-7111) and six events with bad values (7114-7119, issue 19).

    Returns event_id -> (failing file name, stage, a phrase of the problem) for the broken ones.
    """
    write_small_events(trackml_dir, directory, 14, first=7100)
    expected: dict[int, tuple[str, str, str]] = {}

    def broken(event_id: int, text: str, phrase: str) -> None:
        expected[event_id] = (_replace_hits(directory, event_id, text).name, "load", phrase)

    # missing file: the event has a particles file but no hits
    gz = directory / "event000007101-hits.csv.gz"
    gz.unlink()
    (directory / "event000007101-particles.csv").write_text("particle_id,vx,vy,vz,px,py,pz,q,nhits\n")
    expected[7101] = (gz.name, "load", "missing hits file")
    broken(7102, "", "0 bytes")
    truncated = directory / "event000007103-hits.csv.gz"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    expected[7103] = (truncated.name, "load", "gzip")
    broken(7104, "hit_id,y,z,volume_id,layer_id,module_id\n1,2.0,3.0,8,2,1\n", "missing column(s) x")
    broken(7105, HEADER + GOOD_ROW + "2,abc,2.0,3.0,8,2,1\n", "non-numeric")
    broken(7106, HEADER + GOOD_ROW + "2,1.0,nan,3.0,8,2,1\n", "NaN")
    broken(7107, HEADER + GOOD_ROW + "2,1.0,2.0,inf,8,2,1\n", "infinite")
    broken(7108, HEADER + GOOD_ROW + GOOD_ROW, "duplicate hit_id 1")
    broken(7109, HEADER, "no hits")
    broken(7110, HEADER + GOOD_ROW + "2,1.0,2.0,3.0,99,2,1\n", "unknown volume_id 99")
    # hit ids of the truth file belong to another event: tracks are made, the score step fails
    hits = small_hits(trackml_dir, 11)
    truth = pd.DataFrame(
        {"hit_id": hits["hit_id"] + 10_000_000, "particle_id": 0, "tx": 0.0, "ty": 0.0, "tz": 0.0}
        | {"tpx": 0.0, "tpy": 0.0, "tpz": 0.0, "weight": 0.0}
    )
    truth.to_csv(directory / "event000007111-truth.csv", index=False)
    (directory / "event000007111-particles.csv").write_text("particle_id,vx,vy,vz,px,py,pz,q,nhits\n")
    expected[7111] = ("event000007111-truth.csv", "score", "do not match")
    # far larger than the rest (about eight times the hits): just slower
    write_event(Event(event_id=7112, hits=small_hits(trackml_dir, 12, width=0.3)), directory)

    # bad values (issue 19): real slices with one value changed
    write_small_events(trackml_dir, directory, 6, first=7114)

    def bad_value(event_id: int, row: int, column: str, value: object, phrase: str) -> None:
        hits = small_hits(trackml_dir, event_id - 7114).astype({column: object})
        hits.loc[row, column] = value
        broken(event_id, hits.to_csv(index=False), phrase)

    # passed validation once, then failed in graph building with "data must be finite", retried
    bad_value(7114, 3, "x", 1e30, "outside the detector envelope")
    bad_value(7115, 0, "hit_id", -5, "hit_id must be positive, has -5")
    bad_value(7116, 5, "z", 4000.0, "outside the detector envelope")
    bad_value(7117, 2, "module_id", 4000, "no module volume_id=")
    # the same hits as .csv beside the .csv.gz: no silent pick of one
    twice = directory / "event000007118-hits.csv"
    twice.write_bytes(gzip.decompress((directory / "event000007118-hits.csv.gz").read_bytes()))
    expected[7118] = (twice.name, "load", "is here twice")
    # a gzip bomb, 300 MB of hit rows in ~0.3 MB: refused as too large, not parsed
    bomb = directory / "event000007119-hits.csv.gz"
    gzip_bomb(bomb, 300_000_000)
    expected[7119] = (bomb.name, "load", "file is too large: decompresses to more than")
    return expected


@pytest.fixture(scope="module")
def catalogue(trackml_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    directory = tmp_path_factory.mktemp("catalogue")
    return directory, _build_catalogue(directory, trackml_dir)


@pytest.mark.parametrize("mode", ["direct", "fused"])
def test_bad_input_catalogue_fails_each_bad_event_alone(
    mode: str, catalogue: tuple[Path, dict], dask_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    directory, expected = catalogue
    options = {"client": dask_client} if mode == "fused" else {}
    report = run(directory, tmp_path, mode=mode, batch_size=3, **options)
    assert report.exit_code == EXIT_FAILED_EVENTS == 3

    written = json.loads(report.report_path.read_text())
    failed = {f["event_id"]: f for f in written["failed_events"]}
    assert set(failed) == set(expected)
    for event_id, (file_name, stage, phrase) in expected.items():
        failure = failed[event_id]
        assert failure["stage"] == stage, failure
        assert Path(failure["path"]).name == file_name, failure
        assert phrase in failure["message"], failure
        assert file_name in failure["message"] and "\n" not in failure["message"]
        assert failure["attempts"] == 1  # bad data is never retried

    # the others complete: the good ones, the large one, and 7111 whose tracks were made
    submission = pd.read_csv(report.submission_path)
    assert sorted(submission["event_id"].unique()) == [7100, 7111, 7112, 7113]
    assert written["events"]["done"] == 4 and written["events"]["failed"] == len(expected)

    # one line per failure on stderr, naming the file
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("event ")]
    assert len(lines) == len(expected)
    for event_id, (file_name, _, _) in expected.items():
        assert sum(line.startswith(f"event {event_id} ") and file_name in line for line in lines) == 1


# --------------------------------------------------------------------------- killed processes
@pytest.fixture(scope="module")
def slow_events(trackml_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten events of ~1,200 hits: long enough (~1 s each) to kill something mid-run."""
    directory = tmp_path_factory.mktemp("slow_events")
    write_small_events(trackml_dir, directory, 10, first=8000, width=0.15)
    return directory


@pytest.fixture(scope="module")
def clean_run(slow_events: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return run(slow_events, tmp_path_factory.mktemp("clean"), mode="direct", batch_size=1)


def _manifest_batches(out_dir: Path) -> dict[str, Any]:
    """The batch entries written so far (one file per batch; manifest.json at the end)."""
    entries = {}
    for path in (out_dir / "batches").glob("batch-*.json"):
        entry = json.loads(path.read_text())
        entries[entry["key"]] = entry
    return entries


def _wait_for_batches(out_dir: Path, count: int, timeout: float = 300.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = len(_manifest_batches(out_dir))
        if done >= count:
            return done
        time.sleep(0.02)
    raise AssertionError(f"no {count} finished batch(es) in {out_dir} after {timeout} s")


def _manifest(report: Any) -> dict[str, Any]:
    return json.loads((report.submission_path.parent / MANIFEST_NAME).read_text())["batches"]


def _same_outputs(report: Any, clean: Any) -> None:
    assert report.submission_path.read_bytes() == clean.submission_path.read_bytes()
    ours = {b["key"]: b["sha256"] for b in _manifest(report).values()}
    theirs = {b["key"]: b["sha256"] for b in _manifest(clean).values()}
    assert ours == theirs  # every batch's Parquet byte-identical to the clean run's


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fused", "staged"])
def test_worker_sigkilled_mid_run_loses_and_duplicates_nothing(
    mode: str, slow_events: Path, clean_run: Any, dask_client: Any, tmp_path: Path
) -> None:
    pids = dask_client.run(os.getpid)
    killed: dict[str, int] = {}

    def kill_a_worker() -> None:
        killed["batches_done"] = _wait_for_batches(tmp_path, 1)
        pid = pids[min(pids)]
        os.kill(pid, signal.SIGKILL)
        killed["pid"] = pid

    killer = threading.Thread(target=kill_a_worker)
    killer.start()
    report = run(slow_events, tmp_path, mode=mode, batch_size=1, client=dask_client, max_in_flight=4)
    killer.join()
    assert killed["pid"] in pids.values() and killed["batches_done"] < 10  # it died mid-run
    assert report.exit_code == EXIT_OK, report.report["failed_events"]
    events = [e["event_id"] for e in report.report["per_event"]]
    assert sorted(events) == list(range(8000, 8010))  # every event exactly once
    _same_outputs(report, clean_run)


CLIENT_SCRIPT = """
import functools, sys
from pathlib import Path
from trackflow.pipeline.pipeline import Pipeline
from trackflow.cluster import ClusterOptions
from trackflow.run.reconstruct import ReconstructConfig, reconstruct

if __name__ == "__main__":
    loader = functools.partial(Pipeline.random_init, hidden=32, gnn_hidden=16, seed=7)
    reconstruct(ReconstructConfig(
        input_dir=Path(sys.argv[1]), out_dir=Path(sys.argv[2]), mode=sys.argv[3],
        cluster=ClusterOptions(workers=2), batch_size=1, max_in_flight=2, pipeline_loader=loader,
        progress=False,
    ))
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fused", "staged"])
def test_client_killed_then_rerun_resumes_to_identical_outputs(
    mode: str, slow_events: Path, clean_run: Any, dask_client: Any, tmp_path: Path
) -> None:
    script = tmp_path / "client.py"
    script.write_text(textwrap.dedent(CLIENT_SCRIPT))
    out = tmp_path / "out"
    repo = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")])),
    }
    # its own session, so the client, its cluster and workers die together
    client = subprocess.Popen(
        [sys.executable, str(script), str(slow_events), str(out), mode],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_batches(out, 2)
    finally:
        os.killpg(client.pid, signal.SIGKILL)
        client.wait()
    finished = {k: b["sha256"] for k, b in _manifest_batches(out).items()}
    assert 2 <= len(finished) < 10, "the client was to be killed mid-run"

    report = run(slow_events, out, mode=mode, batch_size=1, client=dask_client)
    assert report.exit_code == EXIT_OK
    assert report.report["events"]["resumed"] == len(finished)
    assert report.report["events"]["processed"] == 10 - len(finished)
    after = {k: b["sha256"] for k, b in _manifest_batches(out).items()}
    assert {k: after[k] for k in finished} == finished  # finished batches were not redone
    _same_outputs(report, clean_run)


def test_truncated_gzip_fixture_is_really_truncated(catalogue: tuple[Path, dict]) -> None:
    directory, _ = catalogue
    with pytest.raises((EOFError, OSError)), gzip.open(directory / "event000007103-hits.csv.gz") as f:
        f.read()


# --------------------------------------------------------------------------- full disk
def _assert_resumable(out: Path, finished_at_least: int) -> dict[str, str]:
    """After a failed write: no temporary left, manifest.json valid, every batch entry's Parquet
    intact (nothing half-written). Returns the finished batches' key -> sha256."""
    assert not list(out.rglob("*.tmp")), list(out.rglob("*.tmp"))
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["fingerprint"]["input_dir"]
    finished = _manifest_batches(out)
    assert len(finished) >= finished_at_least
    for entry in finished.values():
        assert sha256_file(out / entry["path"]) == entry["sha256"]
    return {key: entry["sha256"] for key, entry in finished.items()}


@pytest.fixture(scope="module")
def sized_events(trackml_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four events, the third about five times the others' hits (its batch's Parquet ~25 kB,
    the small ones' ~5 kB)."""
    directory = tmp_path_factory.mktemp("sized_events")
    write_small_events(trackml_dir, directory, 2, first=9000)
    write_event(Event(event_id=9002, hits=small_hits(trackml_dir, 2, width=0.3)), directory)
    write_small_events(trackml_dir, directory, 1, first=9003)
    return directory


def _limit_file_size(max_bytes: int) -> Callable[[], None]:
    def limit() -> None:
        # ignored, SIGXFSZ would kill the process; so a write past the limit fails with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return limit


def _cli(*args: str, limit: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "trackflow", *args]
    return subprocess.run(command, capture_output=True, text=True, preexec_fn=limit, timeout=600, check=False)


@pytest.mark.slow
def test_a_file_size_limit_is_one_line_and_the_rerun_resumes(sized_events: Path, tmp_path: Path) -> None:
    """RLIMIT_FSIZE of 12 kB: the small batches are written, the large one's Parquet is not."""
    args = ["reconstruct", str(sized_events), "--mode", "direct", "--batch-size", "1", "--no-progress"]
    clean = _cli(*args, "--out", str(tmp_path / "clean"))
    assert clean.returncode == EXIT_OK, clean.stderr
    out = tmp_path / "out"

    limited = _cli(*args, "--out", str(out), limit=_limit_file_size(12_000))
    assert limited.returncode == 4, limited.stderr
    lines = limited.stderr.strip().splitlines()
    assert len(lines) == 1, limited.stderr  # one line, no traceback
    assert lines[0].startswith(f"trackflow: error: {out / 'batches'}/batch-000009002-"), lines[0]
    assert "no room to write (File too large, EFBIG); 2 finished batch(es)" in lines[0]
    assert "the same command resumes" in lines[0]
    finished = _assert_resumable(out, 2)
    assert sorted(k.split("-")[1] for k in finished) == ["000009000", "000009001"]
    assert not list((out / "batches").glob("batch-000009002-*"))  # not half-written, not at all

    rerun = _cli(*args, "--out", str(out))
    assert rerun.returncode == EXIT_OK, rerun.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["events"]["resumed"] == 2 and report["events"]["processed"] == 2
    assert (out / "submission.csv").read_bytes() == (tmp_path / "clean" / "submission.csv").read_bytes()
    after = {k: b["sha256"] for k, b in _manifest_batches(out).items()}
    assert {k: after[k] for k in finished} == finished  # the finished batches were not redone


@contextlib.contextmanager
def small_tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``directory`` (needs root), unmounted afterwards."""
    directory.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    require(mounted.returncode == 0, f"cannot mount a tmpfs: {mounted.stderr.strip() or 'not root'}")
    try:
        yield directory
    finally:
        # fails (and the test with it) while anything still holds a file there: a leaked fd
        subprocess.run(["umount", str(directory)], check=True, capture_output=True)


def _fill(directory: Path) -> Path:
    """Write into ``directory`` until its file system is full."""
    filler = directory / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return filler


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fused", "staged"])
def test_a_disk_filled_mid_run_is_one_error_and_the_rerun_resumes(
    mode: str, slow_events: Path, clean_run: Any, dask_client: Any, tmp_path: Path
) -> None:
    with small_tmpfs(tmp_path / "disk", "2m") as disk:
        out = disk / "out"
        filled: dict[str, Path] = {}

        def fill_after_two_batches() -> None:
            _wait_for_batches(out, 2)
            filled["filler"] = _fill(disk)

        filler = threading.Thread(target=fill_after_two_batches)
        filler.start()
        with pytest.raises(OutputWriteError) as error:
            run(slow_events, out, mode=mode, batch_size=1, client=dask_client, max_in_flight=2)
        filler.join()
        message = str(error.value)
        assert error.value.exit_code == 4 and "\n" not in message
        assert "no room to write (No space left on device, ENOSPC)" in message, message
        finished = _assert_resumable(out, 2)
        assert len(finished) < 10

        filled["filler"].unlink()
        report = run(slow_events, out, mode=mode, batch_size=1, client=dask_client)
        assert report.exit_code == EXIT_OK
        assert report.report["events"]["resumed"] == len(finished)
        after = {k: b["sha256"] for k, b in _manifest_batches(out).items()}
        assert {k: after[k] for k in finished} == finished
        _same_outputs(report, clean_run)


def test_the_run_log_on_a_full_disk_drops_its_writes_and_closes_quietly(tmp_path: Path) -> None:
    """/dev/full answers every write with ENOSPC: a record that failed to flush stays buffered,
    and the log's close must not raise it over the run's own error line (CI saw this once)."""
    import logging

    from trackflow.run.run_log import LOG_NAME, RunLog

    if not os.access("/dev/full", os.W_OK):
        pytest.skip("no writable /dev/full on this machine")
    (tmp_path / LOG_NAME).symlink_to("/dev/full")
    with RunLog(tmp_path):
        logging.getLogger("trackflow.run").warning("a record the full disk refuses")
    logging.getLogger("trackflow.run").warning("the handler is detached: this goes nowhere near the file")


# --------------------------------------------------------------------------- memory
HUNGRY_EVENT = 9103


@pytest.mark.slow
def test_an_event_that_kills_its_workers_for_memory_fails_alone_with_its_size(
    trackml_dir: Path, tmp_path: Path
) -> None:
    """A real nanny kill: workers of 1.5 GiB on a LocalCluster, event 9103 allocating past it.
    Its batch (9102, 9103) is tried on a second worker (allowed-failures 1), then each event runs
    alone: 9102 finishes, 9103 kills two more workers and fails with its size; the run goes on."""
    events = tmp_path / "events"
    events.mkdir()
    write_small_events(trackml_dir, events, 6, first=9100)
    clean = run(events, tmp_path / "clean", mode="direct")
    loader = functools.partial(hungry_pipeline, TINY_PIPELINE, HUNGRY_EVENT, 4 * 2**30)
    with config.set(**{"workflow.cluster.memory_limit": "1.5GiB"}):
        report = run(
            events, tmp_path / "out", mode="fused", cluster=ClusterOptions(workers=2), pipeline_loader=loader
        )
    assert report.exit_code == EXIT_FAILED_EVENTS
    (failure,) = report.report["failed_events"]
    assert failure["event_id"] == HUNGRY_EVENT and failure["stage"] == "task", failure
    assert failure["error"] == "KilledWorker" and failure["attempts"] == 2
    hits = len(small_hits(trackml_dir, 3))
    size = (events / f"event{HUNGRY_EVENT:09d}-hits.csv.gz").stat().st_size
    assert (
        f"hits.csv.gz: {hits:,} hits, {size:,} bytes; killed every worker it ran on (2 tried"
        in (failure["message"])
    )
    assert "out of memory: Dask's nanny restarted the worker at" in failure["message"]
    done = sorted(e["event_id"] for e in report.report["per_event"])
    assert done == [9100, 9101, 9102, 9104, 9105]
    tracks = pd.read_csv(report.submission_path)
    expected = pd.read_csv(clean.submission_path)
    expected = expected[expected["event_id"] != HUNGRY_EVENT].reset_index(drop=True)
    pd.testing.assert_frame_equal(tracks, expected)


# --------------------------------------------------------------------------- --lifetime
@pytest.mark.slow
def test_workers_retired_at_their_lifetime_lose_nothing(
    slow_events: Path, clean_run: Any, tmp_path: Path
) -> None:
    """Dask's worker lifetime (what dask-jobqueue's ``--lifetime`` / ``--lifetime-stagger`` set,
    with ``lifetime.restart`` as a replacement job would): each worker of a 2-worker LocalCluster
    retires mid-run, through the very call the lifetime timer makes (``close_gracefully(reason=
    "worker-lifetime-reached")``), after 2 and after 5 finished batches: a timer of a few
    seconds would retire workers still importing torch on a loaded machine, again and again.
    Batches in flight move to the other worker; the nanny starts a fresh one."""
    lifetime = {"distributed.worker.lifetime.duration": "1h", "distributed.worker.lifetime.restart": True}
    retired: list[str] = []

    def retire(client: Any, after_batches: int) -> None:
        _wait_for_batches(tmp_path, after_batches)
        address = sorted(client.scheduler_info(n_workers=-1)["workers"])[0]

        def lifetime_reached(dask_worker: Any) -> None:
            dask_worker.loop.add_callback(dask_worker.close_gracefully, reason="worker-lifetime-reached")

        client.run(lifetime_reached, workers=[address])
        retired.append(address)

    with dask.config.set(lifetime), open_cluster("local", 2, 1) as handle:

        def retire_two() -> None:
            retire(handle.client, 2)
            retire(handle.client, 5)

        retirer = threading.Thread(target=retire_two)
        retirer.start()
        report = run(slow_events, tmp_path, mode="fused", batch_size=1, client=handle.client, max_in_flight=4)
        retirer.join()
    assert report.exit_code == EXIT_OK, report.report["failed_events"]
    assert len(retired) == 2
    workers = {e["worker"] for e in report.report["per_event"]}
    assert len(workers) > 2, f"no worker was replaced during the run: {workers}"
    assert sorted(e["event_id"] for e in report.report["per_event"]) == list(range(8000, 8010))
    _same_outputs(report, clean_run)


# --------------------------------------------------------------------------- the run's log
@pytest.mark.parametrize("mode", ["direct", "fused"])
def test_an_internal_error_is_one_line_its_traceback_in_the_log_and_the_report(
    mode: str, trackml_dir: Path, dask_client: Any, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    events = tmp_path / "events"
    events.mkdir()
    write_small_events(trackml_dir, events, 3, first=9200)
    loader = functools.partial(buggy_pipeline, TINY_PIPELINE, 9201)
    options = {"client": dask_client} if mode == "fused" else {}
    report = run(events, tmp_path / "out", mode=mode, pipeline_loader=loader, **options)
    assert report.exit_code == EXIT_FAILED_EVENTS
    (failure,) = report.report["failed_events"]
    assert failure["error"] == "ZeroDivisionError"
    assert "Traceback (most recent call last)" in failure["traceback"]

    err = capsys.readouterr().err
    assert "Traceback" not in err and "ZeroDivisionError" in err
    (line,) = [line for line in err.splitlines() if line.startswith("event 9201 ")]
    assert line.endswith("(internal error; traceback in report.json and trackflow.log)"), line

    log = Path(report.report["outputs"]["log"])
    assert log == tmp_path / "out" / "trackflow.log"
    text = log.read_text()
    assert f"ERROR trackflow.run.tracebacks: {line}\n" in text
    assert failure["traceback"].rstrip() in text
    assert "run started: pid" in text
