"""A progress bar over events, separate from execution: quiet when stderr is not a terminal."""

from __future__ import annotations

import sys
from types import TracebackType

from tqdm.auto import tqdm


class EventProgress:
    """Counts events done and failed; ``enabled=None`` shows the bar only on a terminal."""

    def __init__(self, total: int, enabled: bool | None = None, initial: int = 0) -> None:
        show = sys.stderr.isatty() if enabled is None else enabled
        self._bar = tqdm(total=total, initial=initial, unit="event", disable=not show, dynamic_ncols=True)
        self.failed = 0

    def update(self, done: int, failed: int = 0) -> None:
        self.failed += failed
        if self.failed:
            self._bar.set_postfix(failed=self.failed, refresh=False)
        self._bar.update(done + failed)

    def write(self, line: str) -> None:
        """Print a line to stderr without breaking the bar."""
        tqdm.write(line, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> EventProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
