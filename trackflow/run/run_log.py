"""``OUT/trackflow.log``: what a run has to say beyond its one-line messages.

While a run holds its output directory, :class:`RunLog` appends to ``trackflow.log`` there:

- the traceback of every internal error (an event failure that is not a
  :class:`~trackflow.errors.TrackflowError`), which the terminal shows as one line and
  ``report.json`` keeps as text;
- trackflow's own warnings (workers lost at start-up, a stale lock taken over, a picture that
  failed), which still reach the terminal as before;
- the warnings and errors of the Dask scheduler and nannies running in this process (a worker
  restarted past its memory limit, a task marked failed after its workers died).

A run that resumes appends, under a line naming its pid, host and start; ``--overwrite``
starts the file afresh. A write to the log that fails (a full disk) is dropped without a word:
the log must never turn one clear error line into a logging traceback.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import sys
import traceback
from pathlib import Path
from types import TracebackType

LOG_NAME = "trackflow.log"
#: the loggers whose records go to the file: trackflow's, and Dask's (scheduler, nanny, client)
CAPTURED = {"trackflow": logging.INFO, "distributed": logging.WARNING}
#: a logger for the file alone: tracebacks of internal errors, never on the terminal
TRACEBACKS = "trackflow.run.tracebacks"


class _QuietFileHandler(logging.FileHandler):
    """A FileHandler whose failed writes (ENOSPC, EFBIG) are dropped, not printed to stderr;
    ``failed_writes`` counts them."""

    failed_writes = 0

    def handleError(self, record: logging.LogRecord) -> None:
        self.failed_writes += 1

    def flush(self) -> None:
        # logging calls flush outside handleError (in close, at exit): a record buffered
        # before the disk filled would otherwise raise ENOSPC over the run's own error line
        try:
            super().flush()
        except OSError:
            self.failed_writes += 1

    def close(self) -> None:
        try:
            super().close()
        except OSError:  # the stream's own close flushes its buffer once more
            self.failed_writes += 1


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg,unused-ignore]
    """What Python's last-resort handler does (WARNING and up, the message alone, to the
    ``sys.stderr`` of the moment); stands in for it while the file handler is attached, since
    logging falls back to it only when a record finds no handler at all."""

    def __init__(self) -> None:
        super().__init__()
        self.setLevel(logging.WARNING)

    @property  # type: ignore[override,unused-ignore]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


class RunLog:
    """``out_dir/trackflow.log`` for the duration of a run (a context manager)."""

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / LOG_NAME
        self._handler = _QuietFileHandler(self.path, mode="a", encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._attached: list[tuple[logging.Logger, int, logging.Handler | None]] = []
        for name, level in CAPTURED.items():
            logger = logging.getLogger(name)
            # nothing handles these records yet: they reach the terminal through logging's last
            # resort, which the file handler would switch off
            terminal = None if logger.hasHandlers() else _StderrHandler()
            self._attached.append((logger, logger.level, terminal))
            if logger.getEffectiveLevel() > level:
                logger.setLevel(level)  # e.g. trackflow's INFO records, unset elsewhere
            logger.addHandler(self._handler)
            if terminal is not None:
                logger.addHandler(terminal)
        self._tracebacks = logging.getLogger(TRACEBACKS)
        self._tracebacks.propagate = False  # the file only
        self._tracebacks.setLevel(logging.ERROR)
        self._tracebacks.addHandler(self._handler)
        started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        logging.getLogger("trackflow.run").info(
            "run started: pid %d on %s at %s", os.getpid(), socket.gethostname(), started
        )

    def traceback(self, what: str, text: str) -> None:
        """Write an internal error's traceback ``text``, introduced by the one line ``what``."""
        self._tracebacks.error("%s\n%s", what, text.rstrip())

    def close(self) -> None:
        """Detach from the loggers (restoring their levels) and close the file (idempotent)."""
        for logger, level, terminal in self._attached:
            logger.removeHandler(self._handler)
            if terminal is not None:
                logger.removeHandler(terminal)
            logger.setLevel(level)
        self._attached.clear()
        self._tracebacks.removeHandler(self._handler)
        self._handler.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        from trackflow.errors import TrackflowError

        if error is not None and not isinstance(error, TrackflowError | KeyboardInterrupt):
            # a bug in the run itself: its traceback is kept here as well as where it surfaces
            text = "".join(traceback.format_exception(error))
            self.traceback(f"run failed: {type(error).__name__}: {error}", text)
        self.close()
