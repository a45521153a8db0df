"""Bad input: every malformed event file raises EventFileError with ONE line naming the file and
the problem (issue 7's catalogue), so a batch job can report the event and carry on."""

from __future__ import annotations

import gzip
import re
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trackflow import config
from trackflow.errors import EventFileError
from trackflow.events import Event, list_events, read_event, read_submission, write_event
from trackflow.events.submission import check_tracks
from trackflow.events.validation import ValueChecks

EVENT_ID = 1
PREFIX = f"event{EVENT_ID:09d}"
HITS_HEADER = b"hit_id,x,y,z,volume_id,layer_id,module_id\n"


def valid_event(event_id: int = EVENT_ID) -> Event:
    """12 hits: particle 1 (5 hits), particle 2 (4 hits), 3 noise hits; particle 3 has no hits."""
    particle_id = np.array([1] * 5 + [2] * 4 + [0] * 3, dtype=np.int64)
    n = len(particle_id)
    hit_id = np.arange(1, n + 1, dtype=np.int64)
    x = np.linspace(30.0, 600.0, n)
    hits = pd.DataFrame(
        {
            "hit_id": hit_id,
            "x": x.astype(np.float32),
            "y": np.float32(5.0),
            "z": np.float32(-20.0),
            "volume_id": np.array([8] * 6 + [13] * 6, dtype=np.int32),
            "layer_id": np.full(n, 2, dtype=np.int32),
            "module_id": np.arange(1, n + 1, dtype=np.int32),
        }
    )
    truth = pd.DataFrame(
        {
            "hit_id": hit_id,
            "particle_id": particle_id,
            "tx": x,
            "ty": 5.0,
            "tz": -20.0,
            "tpx": 1.0,
            "tpy": 0.1,
            "tpz": 0.2,
            "weight": np.where(particle_id != 0, 1 / 9, 0.0),
        }
    )
    particles = pd.DataFrame(
        {
            "particle_id": np.array([1, 2, 3], dtype=np.int64),
            "vx": 0.0,
            "vy": 0.0,
            "vz": 0.0,
            "px": [1.0, 2.0, 0.3],
            "py": 0.1,
            "pz": 0.2,
            "q": [1, -1, 1],
            "nhits": [5, 4, 0],
        }
    )
    return Event(event_id, hits, truth=truth, particles=particles)


@pytest.fixture
def event_dir(tmp_path: Path) -> Path:
    """A directory holding one valid event (hits, truth, particles; .csv.gz)."""
    write_event(valid_event(), tmp_path)
    return tmp_path


def test_the_valid_event_reads(event_dir: Path) -> None:
    event = read_event(event_dir / PREFIX)
    assert event.n_hits == 12
    assert event.truth is not None and len(event.truth) == 12
    assert event.particles is not None and len(event.particles) == 3


# --------------------------------------------------------------------------------------------
# how to break a file
# --------------------------------------------------------------------------------------------

Mutation = Callable[[Path], None]


def edit_lines(change: Callable[[list[str]], list[str]]) -> Mutation:
    """Rewrite a gzipped CSV's lines (header first) through ``change``."""

    def mutate(path: Path) -> None:
        lines = gzip.decompress(path.read_bytes()).decode().splitlines()
        path.write_bytes(gzip.compress(("\n".join(change(lines)) + "\n").encode()))

    return mutate


def set_field(row: int, column: str, value: str) -> Mutation:
    """Set ``column`` of data row ``row`` (0 = first data line, i.e. line 2) to ``value``."""

    def change(lines: list[str]) -> list[str]:
        header = lines[0].split(",")
        fields = lines[row + 1].split(",")
        fields[header.index(column)] = value
        lines[row + 1] = ",".join(fields)
        return lines

    return edit_lines(change)


def drop_column(column: str) -> Mutation:
    def change(lines: list[str]) -> list[str]:
        index = lines[0].split(",").index(column)
        return [",".join(f for i, f in enumerate(line.split(",")) if i != index) for line in lines]

    return edit_lines(change)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def truth_of_another_event(path: Path) -> None:
    """Replace the truth with that of an event whose hits are numbered differently."""
    other = valid_event()
    assert other.truth is not None
    truth = other.truth.assign(hit_id=other.truth["hit_id"] + 100)
    truth.to_csv(path, index=False, compression={"method": "gzip", "mtime": 0})


def swap_particle(path: Path) -> None:
    """Particles file of another event: particle 2 is not in it."""
    edit_lines(lambda lines: [line for line in lines if not line.startswith("2,")])(path)


# (case id, part whose file is broken, how, the problem the message must state)
CASES: list[tuple[str, str, Mutation, str]] = [
    ("missing file", "hits", lambda p: p.unlink(), r"missing hits file"),
    ("0-byte file", "hits", lambda p: p.write_bytes(b""), r"file is empty \(0 bytes\)"),
    ("truncated gzip", "hits", truncate, r"truncated or corrupt gzip"),
    ("not gzip at all", "truth", lambda p: p.write_bytes(b"hit_id,x\n1,2\n"), r"corrupt gzip"),
    (
        "binary garbage",
        "hits",
        lambda p: p.write_bytes(gzip.compress(b"\xff\xfe\x00garbage\n\x00\x01\n")),
        r"not a text CSV",
    ),
    ("missing column", "hits", drop_column("volume_id"), r"missing column\(s\) volume_id"),
    ("missing truth column", "truth", drop_column("weight"), r"missing column\(s\) weight"),
    (
        "non-numeric field",
        "hits",
        set_field(3, "z", "12.5mm"),
        r"column z has a non-numeric value '12\.5mm' on line 5",
    ),
    ("NaN", "hits", set_field(0, "y", "nan"), r"column y has a missing/NaN value on line 2"),
    ("blank field", "particles", set_field(1, "px", ""), r"column px has a missing/NaN value on line 3"),
    ("inf", "truth", set_field(2, "tz", "inf"), r"column tz has an infinite value on line 4"),
    ("fractional id", "hits", set_field(0, "module_id", "3.5"), r"column module_id must hold integers"),
    ("duplicate hit_id", "hits", set_field(4, "hit_id", "2"), r"duplicate hit_id 2 on line 6"),
    ("duplicate particle_id", "particles", set_field(2, "particle_id", "1"), r"duplicate particle_id 1"),
    ("empty event", "hits", edit_lines(lambda lines: lines[:1]), r"event is empty: no hits"),
    ("unknown volume id", "hits", set_field(5, "volume_id", "10"), r"unknown volume_id 10 on line 7"),
    # values, not only types (issue 19)
    (
        "hit at x = 1e30",
        "hits",
        set_field(0, "x", "1e30"),
        r"hit outside the detector envelope on line 2: x=1e\+30 .*\|z\| <= 3100 mm, r <= 1100 mm",
    ),
    ("hit beyond z_max", "hits", set_field(1, "z", "-3200.5"), r"outside the detector envelope on line 3"),
    (
        "float32 overflow",
        "truth",
        set_field(2, "tpx", "-1e39"),
        r"column tpx has a value -1e\+39 beyond float32's range on line 4",
    ),
    ("negative hit_id", "hits", set_field(0, "hit_id", "-7"), r"hit_id must be positive, has -7 on line 2"),
    (
        "zero hit_id in truth",
        "truth",
        set_field(3, "hit_id", "0"),
        r"hit_id must be positive, has 0 on line 5",
    ),
    (
        "line longer than a block",
        "hits",
        lambda p: p.write_bytes(gzip.compress(HITS_HEADER + b"0" * (40 << 20))),
        r"not a valid CSV file \(a line longer than 16777216 bytes\)",
    ),
    (
        "ragged row",
        "hits",
        edit_lines(lambda lines: [*lines[:2], lines[2] + ",9", *lines[3:]]),
        r"not a valid CSV",
    ),
    (
        "truth hit_ids not matching hits",
        "truth",
        edit_lines(lambda lines: lines[:-1]),
        r"truth hit_ids do not match the hits \(11 truth rows, 12 hits",
    ),
    (
        "truth of another event",
        "truth",
        truth_of_another_event,
        r"hit_id 101 is not in event000000001-hits\.csv\.gz",
    ),
    (
        "particle in truth missing from particles",
        "particles",
        swap_particle,
        r"particle_id 2 is not in event000000001-particles\.csv\.gz",
    ),
]

#: where the message must point when it is not the broken file itself
NAMED_FILE = {
    "particle in truth missing from particles": "truth",  # the truth row refers to it
}


@pytest.mark.parametrize(("part", "mutate", "problem"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_file_gives_one_line_naming_file_and_problem(
    event_dir: Path, request: pytest.FixtureRequest, part: str, mutate: Mutation, problem: str
) -> None:
    case = request.node.callspec.id
    path = event_dir / f"{PREFIX}-{part}.csv.gz"
    mutate(path)
    with pytest.raises(EventFileError) as error:
        read_event(event_dir / PREFIX)
    message = str(error.value)
    named = event_dir / f"{PREFIX}-{NAMED_FILE.get(case, part)}.csv.gz"
    assert "\n" not in message
    assert message.startswith(f"{named}: "), message
    assert error.value.path == named
    assert re.search(problem, message), message


def test_catalogue_has_at_least_12_cases() -> None:
    assert len(CASES) >= 12


def gzip_bomb(path: Path, decompressed_bytes: int, row: bytes = b"1,30.5,2.0,3.0,8,2,1\n") -> None:
    """A small .gz that decompresses to ``decompressed_bytes`` of valid-looking hit rows."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    chunk = row * ((1 << 20) // len(row))
    with path.open("wb") as f:
        f.write(compressor.compress(HITS_HEADER))
        for _ in range(decompressed_bytes // len(chunk) + 1):
            f.write(compressor.compress(chunk))
        f.write(compressor.flush())


def test_gzip_bomb_is_refused_as_too_large(event_dir: Path) -> None:
    hits = event_dir / f"{PREFIX}-hits.csv.gz"
    gzip_bomb(hits, 3 << 20)
    assert hits.stat().st_size < 100_000
    with config.set(**{"events.max_file_bytes": 1 << 20}), pytest.raises(EventFileError) as error:
        read_event(hits)
    assert str(error.value) == (
        f"{hits}: file is too large: decompresses to more than 1048576 bytes, the limit for one "
        "event file (setting events.max_file_bytes)"
    )


def test_plain_csv_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    written = write_event(Event(EVENT_ID, valid_event().hits), tmp_path, compress=False)
    size = written["hits"].stat().st_size
    with (
        config.set(**{"events.max_file_bytes": size - 1}),
        pytest.raises(
            EventFileError, match=rf"hits\.csv: file is too large: holds more than {size - 1} bytes"
        ),
    ):
        read_event(written["hits"])
    with config.set(**{"events.max_file_bytes": size}):
        assert read_event(written["hits"]).n_hits == 12


def test_envelope_is_a_setting(event_dir: Path) -> None:
    set_field(0, "z", "3150")(event_dir / f"{PREFIX}-hits.csv.gz")
    with pytest.raises(EventFileError, match=r"on line 2: x=30 y=5 z=3150 mm"):
        read_event(event_dir / PREFIX)
    with config.set(**{"events.z_max": 3200.0}):
        assert read_event(event_dir / PREFIX).n_hits == 12
    assert ValueChecks.from_config() == ValueChecks(z_max=3100.0, r_max=1100.0)
    with pytest.raises(ValueError, match="must be > 0"):
        ValueChecks(r_max=0.0)


def test_event_as_csv_and_csv_gz_fails_alone(event_dir: Path) -> None:
    """Both ``-hits.csv`` and ``-hits.csv.gz``: the event fails in one line naming both, instead
    of one being picked without a word; another event beside it reads."""
    write_event(valid_event(event_id=2), event_dir)
    gz = event_dir / f"{PREFIX}-hits.csv.gz"
    plain = event_dir / f"{PREFIX}-hits.csv"
    plain.write_bytes(gzip.decompress(gz.read_bytes()))
    first, second = list_events(event_dir)
    with pytest.raises(EventFileError) as error:
        first.load()
    assert str(error.value) == (
        f"{plain}: hits of event 1 is here twice ({plain.name} and {gz.name}): "
        "one file per event and part; remove one"
    )
    assert second.load().n_hits == 12


def test_modules_must_exist_in_the_detector_description(event_dir: Path, detectors_csv: Path) -> None:
    set_field(4, "module_id", "4000")(event_dir / f"{PREFIX}-hits.csv.gz")
    hits = event_dir / f"{PREFIX}-hits.csv.gz"
    with config.set(**{"data.detectors": str(detectors_csv)}):
        with pytest.raises(EventFileError) as error:
            read_event(hits)
        assert str(error.value) == (
            f"{hits}: no module volume_id=8 layer_id=2 module_id=4000 (line 6) in the detector "
            "description detectors.csv.gz (1 hit(s) on unknown modules)"
        )
        with config.set(**{"events.check_modules": False}):
            assert read_event(hits).n_hits == 12


def test_mismatched_event_ids_between_files(event_dir: Path) -> None:
    """The truth file carries another event's id: event 1 reads without truth, event 2 is
    reported as lacking hits, naming the file that is there."""
    (event_dir / f"{PREFIX}-truth.csv.gz").rename(event_dir / "event000000002-truth.csv.gz")
    refs = list_events(event_dir)
    assert [ref.event_id for ref in refs] == [1, 2]
    assert refs[0].load().truth is None
    with pytest.raises(EventFileError) as error:
        refs[1].load()
    message = str(error.value)
    assert message.startswith(f"{event_dir / 'event000000002-hits.csv.gz'}: missing hits file")
    assert "event000000002-truth.csv.gz" in message
    assert "\n" not in message


def test_plain_csv_errors_name_the_csv(tmp_path: Path) -> None:
    write_event(valid_event(), tmp_path, compress=False)
    path = tmp_path / f"{PREFIX}-hits.csv"
    path.write_text(path.read_text().replace("\n1,", "\n1,x", 1))
    with pytest.raises(EventFileError, match=r"hits\.csv: column x has a non-numeric value") as error:
        read_event(path)
    assert "\n" not in str(error.value)


def test_unknown_event_id_and_not_a_directory(event_dir: Path) -> None:
    with pytest.raises(EventFileError, match=r"no files for event id\(s\) 7"):
        list_events(event_dir, [1, 7])
    with pytest.raises(EventFileError, match="is not a directory"):
        list_events(event_dir / "nowhere")
    with pytest.raises(EventFileError, match="is not a TrackML event file name"):
        read_event(event_dir / "hits.csv")


# --------------------------------------------------------------------------------------------
# submission files
# --------------------------------------------------------------------------------------------

SUBMISSION_CASES = [
    ("missing file", None, r"submission file does not exist"),
    ("0-byte file", "", r"not a valid submission CSV"),
    ("missing column", "event_id,hit_id\n1,1\n", r"missing column\(s\) track_id"),
    ("non-integer track_id", "event_id,hit_id,track_id\n1,1,a\n", r"column track_id must hold integers"),
    (
        "hit twice",
        "event_id,hit_id,track_id\n1,1,3\n1,2,3\n1,1,4\n",
        r"hit 1 of event 1 appears more than once",
    ),
]


@pytest.mark.parametrize(
    ("text", "problem"), [c[1:] for c in SUBMISSION_CASES], ids=[c[0] for c in SUBMISSION_CASES]
)
def test_bad_submission(tmp_path: Path, text: str | None, problem: str) -> None:
    path = tmp_path / "submission.csv"
    if text is not None:
        path.write_text(text)
    with pytest.raises(EventFileError, match=problem) as error:
        read_submission(path)
    assert str(error.value).startswith(f"{path}: ")
    assert "\n" not in str(error.value)


def test_submission_must_cover_every_hit_once(tmp_path: Path) -> None:
    hits = valid_event().hits
    tracks = pd.DataFrame({"event_id": 1, "hit_id": hits["hit_id"], "track_id": 0})
    check_tracks(tracks, hits, 1, tmp_path / "s.csv")
    with pytest.raises(EventFileError, match=r"s\.csv: event 1: tracks cover 11 hits, the event has 12"):
        check_tracks(tracks.iloc[1:], hits, 1, tmp_path / "s.csv")
    with pytest.raises(EventFileError, match="appears more than once"):
        check_tracks(pd.concat([tracks, tracks.iloc[:1]]), hits, 1, tmp_path / "s.csv")


def test_one_bad_event_does_not_hide_the_others(event_dir: Path, tmp_path: Path) -> None:
    """Listing is by name only; each event fails or reads on its own."""
    other = tmp_path / "two"
    shutil.copytree(event_dir, other)
    write_event(valid_event(event_id=2), other)
    (other / f"{PREFIX}-hits.csv.gz").write_bytes(b"")
    outcomes = []
    for ref in list_events(other):
        try:
            outcomes.append(ref.load().n_hits)
        except EventFileError as error:
            outcomes.append(error.problem)
    assert outcomes == ["file is empty (0 bytes)", 12]
