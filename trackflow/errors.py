"""Errors a user can cause: one type per kind, each with a one-line message naming what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class TrackflowError(Exception):
    """Base class of every error trackflow raises on purpose; the CLI prints its one-line message
    and exits with ``exit_code``."""

    exit_code = 2


class PathError(TrackflowError):
    """An error about one file or directory. The message is one line: ``"<path>: <problem>"``
    (``problem`` is folded onto one line, whatever the cause said)."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        # rebuilt from (path, problem), not from the message: it crosses processes intact
        return (type(self), (self.path, self.problem))


class EventFileError(PathError, ValueError):
    """A TrackML (or simulated) event file is unreadable or inconsistent."""


class ModelFileError(PathError, ValueError):
    """A model directory or weight file is missing, tampered with, or unsafe to load."""


class ConfigError(TrackflowError, ValueError):
    """A setting or option has a value trackflow cannot use."""


class OutputWriteError(PathError):
    """An output file could not be written (a full disk, a quota, a file size limit): what was
    finished before is kept intact, and the same command resumes once there is room. Exit code 4,
    so that a batch script can tell it from bad input (2) and failed events (3)."""

    exit_code = 4
