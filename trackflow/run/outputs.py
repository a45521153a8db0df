"""What a run leaves in ``--out``, written so that a crash loses at most the batches in flight.

Layout::

    OUT/batches/batch-<first event>-<n events>-<hash>.parquet   the tracks of one finished batch
    OUT/batches/batch-<...>.json     its manifest entry: events, Parquet file, sha256, failures
    OUT/manifest.json    the run's fingerprint and (at the end) every batch entry in one file
    OUT/submission.csv   event_id,hit_id,track_id of every event, in event order (at the end)
    OUT/report.json      throughput, latency, stages, workers, failures (trackflow.run.report)
    OUT/trackflow.log    tracebacks of internal errors, warnings (trackflow.run.run_log)

Each batch's Parquet is written (atomically) the moment its result arrives, then its manifest
entry with the Parquet's sha256 (atomically). One small file per batch keeps the cost of a batch
constant: rewriting one growing manifest after every batch would cost O(batches²) over a long
campaign. ``manifest.json`` holds the run's *fingerprint* (inputs, models, pipeline settings,
batching), written when the run starts, and every entry, written when it ends. A re-run with the
same ``--out`` skips every batch whose entry and file still match (resuming with other settings
is refused rather than mixing two runs in one submission); ``overwrite=True`` removes these files
and starts afresh.

A write that fails (a full disk, a quota, a file size limit) raises :class:`OutputWriteError`
(one line naming the file and the cause; the CLI's exit 4). Every file is written to a temporary
beside it and renamed, so no batch is ever half-written and ``manifest.json`` stays valid; the
batches finished before are kept, and the same command resumes once there is room.

One run at a time: ``OUT/.trackflow.lock`` is held (``flock``) from the moment a run opens its
outputs until its report is written, so a second run on the same ``--out`` fails at once, naming
the first one's pid and host (:class:`OutDirLock`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import logging
import os
import socket
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from trackflow.errors import ConfigError, OutputWriteError
from trackflow.events.submission import read_tracks_parquet, write_submission, write_tracks_parquet
from trackflow.files import atomic_path, sha256_file, write_json
from trackflow.run.batching import Batch
from trackflow.run.records import BatchResult, EventFailure
from trackflow.run.run_log import LOG_NAME

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
BATCH_DIR = "batches"
SUBMISSION_NAME = "submission.csv"
REPORT_NAME = "report.json"
LOCK_NAME = ".trackflow.lock"
MANIFEST_VERSION = 1
#: errnos of a write that found no room: the device, the user's quota, or RLIMIT_FSIZE
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@contextlib.contextmanager
def writing(path: Path, out_dir: Path, finished: int) -> Iterator[None]:
    """Turn an OSError raised while writing ``path`` into one :class:`OutputWriteError` line
    that says what is kept (``finished`` batches in ``out_dir``) and how to go on."""
    try:
        yield
    except OSError as error:
        if error.errno:  # pyarrow's strerror is a paragraph; the errno says the same in brief
            said = f"{os.strerror(error.errno)}, {errno.errorcode.get(error.errno, error.errno)}"
        else:
            said = " ".join(str(error).split())
        if error.errno in NO_ROOM:
            problem, until = f"no room to write ({said})", "there is room"
        else:
            problem, until = f"cannot write ({said})", "it can be written"
        raise OutputWriteError(
            path,
            f"{problem}; {finished} finished batch(es) in {out_dir} are kept intact, "
            f"and the same command resumes once {until}",
        ) from error


class OutDirLock:
    """An exclusive lock on an output directory: ``flock`` on ``DIR/.trackflow.lock``, which
    holds the owner's ``pid host start-time``.

    The kernel drops a ``flock`` when its process dies, so a killed run never leaves the
    directory locked. Where the file system has no ``flock`` (some network mounts answer
    ENOLCK/EOPNOTSUPP) the file's content is the lock: a live pid, or any pid on another host,
    refuses; a dead pid on this host is a stale lock and is taken over. Raises ConfigError
    (one line naming the other run's pid and host) when the directory is in use.
    """

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / LOCK_NAME
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = self._owner()
            self.release()
            raise self._in_use(owner) from None
        except OSError as error:
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                self.release()
                raise
            self._take_over_if_stale()
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"{os.getpid()} {socket.gethostname()} {_now()}\n".encode(), 0)
        except OSError:  # e.g. a full disk: not left holding the lock
            self.release()
            raise
        # a lock object dropped without release() (an exception on the way) still lets go
        self._finalizer = weakref.finalize(self, os.close, self._fd)

    def _owner(self) -> tuple[int, str, str]:
        """pid, host and start time written by the lock's holder (0, "?", "?" when unreadable)."""
        with contextlib.suppress(OSError, ValueError):
            pid, host, since = self.path.read_text().split()[:3]
            return int(pid), host, since
        return 0, "?", "?"

    def _in_use(self, owner: tuple[int, str, str]) -> ConfigError:
        pid, host, since = owner
        return ConfigError(
            f"out_dir {self.path.parent}: in use by another trackflow run (pid {pid} on host {host}, "
            f"since {since}); wait for it to end or choose another out_dir"
        )

    def _take_over_if_stale(self) -> None:
        pid, host, since = self._owner()
        if pid and pid != os.getpid():
            alive = host != socket.gethostname() or _pid_alive(pid)
            if alive:
                self.release()
                raise self._in_use((pid, host, since))
            logger.warning("%s: stale lock of pid %d on %s (not running); taken over", self.path, pid, host)

    def release(self) -> None:
        """Let go of the lock (idempotent); the file stays, its content is only informative."""
        if self._fd is None:
            return
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer.detach()
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class BatchEntry:
    """A finished batch in the manifest: its events, its Parquet file (relative to ``--out``),
    the file's sha256 and rows, the failed events, and one summary per good event (event_id,
    hits, tracks, timings in s, counts)."""

    key: str
    batch_id: int
    event_ids: list[int]
    path: str
    sha256: str
    rows: int
    failures: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def failure_objects(self) -> list[EventFailure]:
        return [EventFailure(**f) for f in self.failures]


class RunOutputs:
    """The output directory of one reconstruction run (see the module docstring)."""

    def __init__(self, out_dir: str | Path, fingerprint: dict[str, Any], overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))  # as it reads back
        with writing(self.out_dir / LOCK_NAME, self.out_dir, 0):
            self.out_dir.mkdir(parents=True, exist_ok=True)
            # before anything is touched: another run's temporaries are not partial writes
            self.lock = OutDirLock(self.out_dir)
        try:
            with writing(self.batch_dir, self.out_dir, 0):
                self.batch_dir.mkdir(exist_ok=True)
            self._remove_partial_writes()
            if overwrite:
                self._remove_previous()
            self.entries: dict[str, BatchEntry] = {}
            if self.manifest_path.exists():
                self._load_manifest()
            self._load_entries()
            self.write_manifest()
        except BaseException:
            self.lock.release()  # e.g. a resume with other settings: refused, and not left locked
            raise

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / MANIFEST_NAME

    @property
    def batch_dir(self) -> Path:
        return self.out_dir / BATCH_DIR

    @property
    def submission_path(self) -> Path:
        return self.out_dir / SUBMISSION_NAME

    @property
    def report_path(self) -> Path:
        return self.out_dir / REPORT_NAME

    def _remove_partial_writes(self) -> None:
        # temporaries of trackflow.files.atomic_path left by a run killed mid-write
        for pattern in (
            f"{BATCH_DIR}/.batch-*.tmp",
            f".{MANIFEST_NAME}.*.tmp",
            f".{SUBMISSION_NAME}.*.tmp",
            f".{REPORT_NAME}.*.tmp",
        ):
            for path in self.out_dir.glob(pattern):
                path.unlink(missing_ok=True)

    def _remove_previous(self) -> None:
        # only what a run writes; anything else the user put in --out stays
        for pattern in ("batch-*.parquet", "batch-*.json"):
            for path in self.batch_dir.glob(pattern):
                path.unlink()
        for name in (MANIFEST_NAME, SUBMISSION_NAME, REPORT_NAME, LOG_NAME):
            (self.out_dir / name).unlink(missing_ok=True)

    def _load_manifest(self) -> None:
        try:
            manifest = json.loads(self.manifest_path.read_text())
            entries = {key: BatchEntry(**entry) for key, entry in manifest["batches"].items()}
            previous = manifest["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ConfigError(
                f"{self.manifest_path}: unreadable manifest ({error}); run again with overwrite"
            ) from error
        if previous != self.fingerprint:
            differ = sorted(
                k for k in {*previous, *self.fingerprint} if previous.get(k) != self.fingerprint.get(k)
            )
            raise ConfigError(
                f"out_dir {self.out_dir} holds a run with other settings ({', '.join(differ)}); "
                "overwrite it to start afresh or choose another out_dir"
            )
        self.entries = entries

    def _load_entries(self) -> None:
        """Entries of the batches written since the manifest was last consolidated."""
        for path in sorted(self.batch_dir.glob("batch-*.json")):
            try:
                entry = BatchEntry(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError) as error:
                # written atomically, so only tampering gets here; the batch simply runs again
                logger.warning("%s: unreadable manifest entry (%s); the batch runs again", path, error)
                continue
            self.entries[entry.key] = entry

    def finished(self, batch: Batch) -> BatchEntry | None:
        """The manifest entry of ``batch`` when its file is still there and intact, else None."""
        entry = self.entries.get(batch.key)
        if entry is None or entry.event_ids != list(batch.event_ids):
            return None
        path = self.out_dir / entry.path
        if not path.is_file() or sha256_file(path) != entry.sha256:
            logger.warning("%s: missing or changed since it was written; the batch runs again", path)
            return None
        return entry

    def _writing(self, path: Path) -> contextlib.AbstractContextManager[None]:
        return writing(path, self.out_dir, len(self.entries))

    def write_batch(self, result: BatchResult) -> BatchEntry:
        """Write the batch's tracks (Parquet, atomic), then its manifest entry (atomic): a batch
        whose entry is missing runs again, so a crash (or a full disk) between the two loses
        nothing."""
        batch = result.batch
        path = self.batch_dir / f"{batch.key}.parquet"
        with self._writing(path):
            write_tracks_parquet(path, result.tracks)
        entry = BatchEntry(
            key=batch.key,
            batch_id=batch.batch_id,
            event_ids=list(batch.event_ids),
            path=str(path.relative_to(self.out_dir)),
            sha256=sha256_file(path),
            rows=len(result.tracks),
            failures=[f.to_dict() for f in result.failures],
            events=[
                {
                    "event_id": e.event_id,
                    "hits": e.hits,
                    "tracks": e.tracks,
                    "timings": e.timings,
                    "counts": e.counts,
                }
                for e in result.events
            ],
        )
        entry_path = self.batch_dir / f"{batch.key}.json"
        with self._writing(entry_path), atomic_path(entry_path) as tmp:
            tmp.write_text(json.dumps(asdict(entry), sort_keys=True) + "\n")
        self.entries[batch.key] = entry
        return entry

    def write_manifest(self) -> None:
        """``manifest.json``: the fingerprint and every entry known now, in one file (atomic)."""
        manifest = {
            "version": MANIFEST_VERSION,
            "fingerprint": self.fingerprint,
            "batches": {key: asdict(entry) for key, entry in sorted(self.entries.items())},
        }
        with self._writing(self.manifest_path), atomic_path(self.manifest_path) as tmp:
            tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")

    def write_submission(self, batches: Iterable[Batch]) -> Path:
        """``submission.csv`` from the batches' Parquet files, in batch (= event) order."""
        entries = [self.entries[b.key] for b in sorted(batches, key=lambda b: b.batch_id)]
        frames = (read_tracks_parquet(self.out_dir / entry.path) for entry in entries)
        with self._writing(self.submission_path):
            return write_submission(self.submission_path, frames)

    def read_tracks(self, batches: Iterable[Batch]) -> pd.DataFrame:
        """All tracks of ``batches`` as one submission frame, in event order."""
        entries = [self.entries[b.key] for b in sorted(batches, key=lambda b: b.batch_id)]
        frames = [read_tracks_parquet(self.out_dir / e.path) for e in entries]
        return (
            pd.concat(frames, ignore_index=True)
            if frames
            else pd.DataFrame(columns=["event_id", "hit_id", "track_id"])
        )

    def write_report(self, report: dict[str, Any]) -> Path:
        """``report.json``, the run's last write: the directory's lock is released after it."""
        try:
            with self._writing(self.report_path):
                write_json(self.report_path, report)
        finally:
            self.lock.release()
        return self.report_path
