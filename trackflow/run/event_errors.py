"""What an error raised on one event means: the one place that classifies it.

Errors are data. A bad event file (any :class:`~trackflow.errors.TrackflowError`) fails only its
event and is never retried, because it would fail again; it is checked first, so a user-caused
error is never mistaken for a passing one. So does any other error that computing on one event's
data raises deterministically (a ``ValueError`` such as "data must be finite", a ``KeyError``,
...): retrying the same computation on the same data gives the same error, whether the data or the
code is at fault; its traceback is kept in the failure (``report.json``), not shown on the
terminal. Only errors that may pass (:data:`TRANSIENT_ERRORS`: a file system hiccup, memory or
CUDA pressure, a timeout) fail the task, so that Dask retries it.

Both the batch tasks (:mod:`trackflow.run.worker_tasks`) and the online service's task
(:mod:`trackflow.service.tasks`) classify through :func:`classify_event_error`.
"""

from __future__ import annotations

from typing import Any

from trackflow.errors import TrackflowError
from trackflow.run.records import EventFailure, traceback_text

__all__ = [
    "TRANSIENT_ERRORS",
    "TransientEventError",
    "classify_event_error",
    "failure_from_transient",
]

#: errors that may pass on a retry (OSError covers ConnectionError and TimeoutError; torch's
#: CUDA errors, out-of-memory included, are RuntimeErrors); any other error raised on one
#: event's data fails that event at once
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, MemoryError, RuntimeError)


class TransientEventError(RuntimeError):
    """An error that may pass (:data:`TRANSIENT_ERRORS`) while processing one event; Dask
    retries the task that raised it.

    Carries the event, the stage, the original error's type name and one-line message, the
    event's file and the traceback, so the client can report it once the retries are spent.
    """

    def __init__(
        self,
        event_id: int,
        stage: str,
        error: str,
        message: str,
        path: str | None = None,
        traceback_text: str | None = None,
    ) -> None:
        self.event_id, self.stage, self.error, self.message = event_id, stage, error, message
        self.path, self.traceback_text = path, traceback_text
        super().__init__(f"event {event_id}, stage {stage}: {error}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.event_id, self.stage, self.error, self.message, self.path, self.traceback_text),
        )

    @classmethod
    def of(cls, event_id: int, stage: str, error: BaseException, path: str | None) -> TransientEventError:
        """The transient error of ``error``, raised on event ``event_id`` in ``stage``."""
        message = " ".join(str(error).split())
        return cls(event_id, stage, type(error).__name__, message, path, traceback_text(error))


def classify_event_error(
    event_id: int, stage: str, error: Exception, path: str | None = None
) -> EventFailure | TransientEventError:
    """The event's failure, or — for an error that may pass — the :class:`TransientEventError`
    the caller raises (``raise outcome from error``) so that Dask retries the task.

    ``path``: the event's file, kept in the failure of an internal error (a TrackflowError
    names its own file, when it has one).
    """
    if isinstance(error, TrackflowError):
        return EventFailure.from_exception(event_id, stage, error)
    if isinstance(error, TRANSIENT_ERRORS):
        return TransientEventError.of(event_id, stage, error, path)
    return EventFailure.from_exception(event_id, stage, error, path=path)


def failure_from_transient(error: TransientEventError, attempts: int) -> EventFailure:
    """The failure of the event a transient error kept failing after ``attempts`` tries."""
    return EventFailure(
        error.event_id,
        error.stage,
        error.error,
        error.message,
        error.path,
        attempts,
        error.traceback_text or "(no traceback)",
    )
