"""TrackML CSV files in and out: ``eventNNNNNNNNN-{hits,cells,truth,particles}.csv[.gz]``.

Directories are listed lazily: :func:`list_events` looks at file names only, and an
:class:`EventRef` reads its files when asked, so a directory of 10,000 events costs nothing up front.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from trackflow.errors import EventFileError
from trackflow.events.event import Event, with_derived
from trackflow.events.validation import SCHEMAS, ValueChecks, check_consistency, check_frame
from trackflow.files import atomic_path

PARTS = ("hits", "cells", "truth", "particles")
FILE_PATTERN = re.compile(r"^event(\d+)-(hits|cells|truth|particles)\.csv(\.gz)?$")
#: bytes pyarrow parses at a time: a line longer than this is not a TrackML row
BLOCK_BYTES = 1 << 24


@dataclass(frozen=True)
class EventRef:
    """Where one event's files are; nothing is read until :meth:`load`.

    ``duplicates``: the parts present twice (``-hits.csv`` beside ``-hits.csv.gz``), with both
    files; such an event fails when it is loaded rather than having one of them picked silently.
    """

    event_id: int
    paths: dict[str, Path] = field(hash=False)
    duplicates: dict[str, tuple[Path, Path]] = field(default_factory=dict, hash=False, compare=False)

    @property
    def hits_path(self) -> Path:
        return self.paths.get("hits") or self.expected_path("hits")

    def expected_path(self, part: str) -> Path:
        directory = next(iter(self.paths.values())).parent if self.paths else Path()
        return directory / f"event{self.event_id:09d}-{part}.csv.gz"

    def size_bytes(self) -> int:
        """Size of the hits file on disk (bytes); a cheap proxy for event size when batching."""
        path = self.paths.get("hits")
        return path.stat().st_size if path is not None and path.exists() else 0

    def load(self, parts: Sequence[str] = PARTS) -> Event:
        """Read and validate the requested parts that exist (hits are always required)."""
        return read_event(self, parts=parts)


def event_prefix(event_id: int) -> str:
    return f"event{event_id:09d}"


def list_events(directory: str | Path, event_ids: Iterable[int] | None = None) -> list[EventRef]:
    """Events in ``directory``, sorted by event id, optionally only ``event_ids``.

    Only file names are looked at. An event appears when any of its files exists; a missing hits
    file, or a part present both as ``.csv`` and ``.csv.gz``, is reported when the event is
    loaded, so one bad event does not stop the others.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise EventFileError(directory, "is not a directory of TrackML event files")
    found: dict[int, dict[str, Path]] = {}
    duplicates: dict[int, dict[str, tuple[Path, Path]]] = {}
    for path in directory.iterdir():
        match = FILE_PATTERN.match(path.name)
        if match:
            event_id, part = int(match.group(1)), match.group(2)
            previous = found.setdefault(event_id, {}).get(part)
            if previous is not None:
                first, second = sorted((previous, path))
                duplicates.setdefault(event_id, {})[part] = (first, second)
            # the .csv.gz stands for the part (until the load refuses the pair), deterministically
            if previous is None or path.name.endswith(".gz"):
                found[event_id][part] = path
    wanted = None if event_ids is None else {int(e) for e in event_ids}
    if wanted is not None:
        absent = sorted(wanted - found.keys())
        if absent:
            raise EventFileError(directory, f"no files for event id(s) {', '.join(map(str, absent[:10]))}")
    return [
        EventRef(event_id, paths, duplicates.get(event_id, {}))
        for event_id, paths in sorted(found.items())
        if wanted is None or event_id in wanted
    ]


def iter_events(
    directory: str | Path, event_ids: Iterable[int] | None = None, parts: Sequence[str] = PARTS
) -> Iterator[Event]:
    """Read events one at a time (lazily) from a directory."""
    for ref in list_events(directory, event_ids):
        yield ref.load(parts)


def _ref_from_path(path: Path) -> EventRef:
    """An EventRef from a prefix (``dir/event000001001``) or any one of the event's files."""
    match = FILE_PATTERN.match(path.name) or re.match(r"^event(\d+)$", path.name)
    if not match:
        raise EventFileError(path, "is not a TrackML event file name (eventNNNNNNNNN-hits.csv[.gz])")
    event_id = int(match.group(1))
    refs = list_events(path.parent, [event_id])
    return refs[0]


def _too_large(path: Path, limit: int, what: str) -> EventFileError:
    return EventFileError(
        path,
        f"file is too large: {what} more than {limit} bytes, the limit for one event file "
        "(setting events.max_file_bytes)",
    )


def _csv_source(path: Path, limit: int) -> Path | pa.BufferReader:
    """What pyarrow parses: the plain file, or a .gz decompressed here with at most ``limit``
    bytes kept, so that a gzip bomb is refused (as too large) before it fills memory."""
    if path.suffix != ".gz":
        if path.stat().st_size > limit:
            raise _too_large(path, limit, "holds")
        return path
    with gzip.open(path, "rb") as stream:
        content = stream.read(limit + 1)
    if len(content) > limit:
        raise _too_large(path, limit, "decompresses to")
    return pa.BufferReader(content)


def read_csv(path: Path, part: str, checks: ValueChecks | None = None) -> pd.DataFrame:
    """Read one CSV(.gz) file and check it against the part's schema and ``checks`` (default
    :meth:`ValueChecks.from_config`)."""
    checks = checks if checks is not None else ValueChecks.from_config()
    if not path.exists():
        raise EventFileError(path, f"missing {part} file")
    if path.stat().st_size == 0:
        raise EventFileError(path, "file is empty (0 bytes)")
    try:
        source = _csv_source(path, checks.max_file_bytes)
        table = pacsv.read_csv(source, read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES))
        # column names are decoded lazily: binary garbage fails here, not in read_csv
        frame = table.to_pandas()
    except UnicodeDecodeError as error:
        raise EventFileError(path, f"not a text CSV file ({error.reason} at byte {error.start})") from error
    except (pa.ArrowInvalid, OSError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        text = str(error)
        lowered = text.lower()
        if path.suffix == ".gz" and any(
            word in lowered for word in ("gzip", "truncated", "compress", "zlib", "inflate")
        ):
            problem = f"truncated or corrupt gzip ({text.splitlines()[0]})"
        elif "Empty CSV" in text:
            problem = "file is empty"
        elif "straddl" in lowered:  # pyarrow's words for a line longer than its block
            problem = f"not a valid CSV file (a line longer than {BLOCK_BYTES} bytes)"
        else:
            problem = f"not a valid CSV file ({text.splitlines()[0] if text else type(error).__name__})"
        raise EventFileError(path, problem) from error
    frame.columns = [str(c).strip() for c in frame.columns]
    return check_frame(path, part, frame, checks)


def read_event(source: str | Path | EventRef, parts: Sequence[str] = PARTS) -> Event:
    """Read one event (hits always; each other requested part if its file exists).

    ``source``: an :class:`EventRef`, a prefix ``dir/event000001001``, or one of the event's files.
    Raises EventFileError naming the file and the problem.
    """
    ref = source if isinstance(source, EventRef) else _ref_from_path(Path(source))
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown event parts {sorted(unknown)}; choose from {PARTS}")
    hits_path = ref.hits_path
    if ref.duplicates:
        part, (first, second) = min(ref.duplicates.items())
        raise EventFileError(
            first,
            f"{part} of event {ref.event_id} is here twice ({first.name} and {second.name}): "
            "one file per event and part; remove one",
        )
    if "hits" not in ref.paths:
        # e.g. a truth or particles file named after another event: say what is there
        others = ", ".join(path.name for _, path in sorted(ref.paths.items()))
        raise EventFileError(hits_path, f"missing hits file (event {ref.event_id} has only {others})")
    checks = ValueChecks.from_config()
    hits = read_csv(hits_path, "hits", checks)
    frames: dict[str, pd.DataFrame | None] = {"hits": hits}
    for part in PARTS[1:]:
        path = ref.paths.get(part)
        frames[part] = read_csv(path, part, checks) if part in parts and path is not None else None
    paths = {part: ref.paths.get(part) or ref.expected_path(part) for part in PARTS}
    check_consistency(hits, frames["truth"], frames["particles"], paths)
    return Event(
        event_id=ref.event_id,
        hits=with_derived(hits),
        cells=frames["cells"],
        truth=frames["truth"],
        particles=frames["particles"],
        source=hits_path,
    )


def _write_frame(frame: pd.DataFrame, path: Path, compress: bool) -> None:
    # pyarrow writes each float in its shortest exact form (float32 round-trips bit for bit) and
    # is much faster than pandas' per-value float_format. gzip level 1: 5x faster than level 6
    # for files ~15 % larger; mtime=0 makes identical content give byte-identical files.
    table = pa.Table.from_pandas(frame, preserve_index=False)
    buffer = pa.BufferOutputStream()
    buffer.write((",".join(map(str, frame.columns)) + "\n").encode())  # unquoted, as TrackML's
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    content = buffer.getvalue().to_pybytes()
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(content, compresslevel=1, mtime=0) if compress else content)


def write_event(event: Event, out_dir: str | Path, compress: bool = True) -> dict[str, Path]:
    """Write an event as TrackML CSV(.gz) files; returns the path per written part."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = ".csv.gz" if compress else ".csv"
    written: dict[str, Path] = {}
    for part in PARTS:
        frame = getattr(event, part)
        if frame is None:
            continue
        columns = list(SCHEMAS[part]) + [
            c for c in frame.columns if c not in SCHEMAS[part] and c not in ("r", "phi", "eta")
        ]
        path = out_dir / f"{event_prefix(event.event_id)}-{part}{suffix}"
        _write_frame(frame[columns], path, compress)
        written[part] = path
    return written
