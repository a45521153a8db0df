"""Track outputs: the TrackML submission CSV (``event_id,hit_id,track_id``) and per-batch Parquet."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from trackflow.errors import EventFileError
from trackflow.files import atomic_path

SUBMISSION_COLUMNS = ("event_id", "hit_id", "track_id")
TRACKS_SCHEMA = pa.schema([("event_id", pa.int64()), ("hit_id", pa.int64()), ("track_id", pa.int64())])


def tracks_frame(event_id: int, hit_ids: np.ndarray, track_labels: np.ndarray) -> pd.DataFrame:
    """One event's tracks as a submission frame: event_id, hit_id, track_id (int64), one row per
    hit, ``track_labels[i]`` the track of ``hit_ids[i]`` (what every reconstruction returns)."""
    return pd.DataFrame(
        {
            "event_id": np.full(len(hit_ids), event_id, dtype=np.int64),
            "hit_id": np.asarray(hit_ids, dtype=np.int64),
            "track_id": np.asarray(track_labels, dtype=np.int64),
        }
    )


def check_tracks(
    tracks: pd.DataFrame, hits: pd.DataFrame, event_id: int, path: str | Path = "<tracks>"
) -> None:
    """Every hit of the event exactly once, and nothing else."""
    ids = tracks.loc[tracks["event_id"] == event_id, "hit_id"].to_numpy()
    if len(ids) != len(np.unique(ids)):
        raise EventFileError(path, f"event {event_id}: a hit_id appears more than once")
    if len(ids) != len(hits) or not np.array_equal(np.sort(ids), np.sort(hits["hit_id"].to_numpy())):
        raise EventFileError(
            path, f"event {event_id}: tracks cover {len(ids)} hits, the event has {len(hits)}"
        )


def write_submission(path: str | Path, frames: Iterable[pd.DataFrame]) -> Path:
    """Write ``event_id,hit_id,track_id`` rows (frames in the order given) atomically."""
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("w") as f:
        f.write(",".join(SUBMISSION_COLUMNS) + "\n")
        for frame in frames:
            frame.loc[:, list(SUBMISSION_COLUMNS)].to_csv(f, header=False, index=False)
    return path


def read_submission(path: str | Path) -> pd.DataFrame:
    """Read a submission CSV; raises EventFileError naming the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise EventFileError(path, "submission file does not exist")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise EventFileError(path, f"not a valid submission CSV ({str(error).splitlines()[0]})") from error
    missing = [c for c in SUBMISSION_COLUMNS if c not in frame.columns]
    if missing:
        raise EventFileError(
            path, f"missing column(s) {', '.join(missing)}; expected event_id,hit_id,track_id"
        )
    for column in SUBMISSION_COLUMNS:
        if not pd.api.types.is_integer_dtype(frame[column]):
            raise EventFileError(path, f"column {column} must hold integers")
    if frame.duplicated(["event_id", "hit_id"]).any():
        row = frame[frame.duplicated(["event_id", "hit_id"])].iloc[0]
        raise EventFileError(
            path, f"hit {int(row.hit_id)} of event {int(row.event_id)} appears more than once"
        )
    return frame.astype(np.int64)


def write_tracks_parquet(path: str | Path, tracks: pd.DataFrame) -> Path:
    """Write one batch's tracks (event_id, hit_id, track_id) as Parquet, atomically."""
    path = Path(path)
    table = pa.Table.from_pandas(
        tracks.loc[:, list(SUBMISSION_COLUMNS)].astype(np.int64), schema=TRACKS_SCHEMA, preserve_index=False
    )
    # the file is opened (and closed) here: given a path, pyarrow leaves its descriptor open
    # when a write fails (a full disk), holding the deleted temporary's space
    with atomic_path(path) as tmp, tmp.open("wb") as sink:
        pq.write_table(table, sink)
    return path


def read_tracks_parquet(path: str | Path) -> pd.DataFrame:
    try:
        tracks: pd.DataFrame = pq.read_table(path, schema=TRACKS_SCHEMA).to_pandas()
    except (OSError, pa.ArrowInvalid) as error:
        raise EventFileError(path, f"unreadable tracks file ({str(error).splitlines()[0]})") from error
    return tracks
