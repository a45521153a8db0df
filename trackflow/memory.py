"""Memory of this process: the one place trackflow reads resident set sizes."""

from __future__ import annotations

import resource
import threading


def rss_bytes() -> int:
    """Resident memory of the calling process now (bytes)."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def peak_rss_bytes() -> int:
    """Highest resident memory of the calling process since it started (bytes; Linux)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # Linux reports KiB


def process_memory() -> dict[str, int]:
    """``{"rss": now, "peak": since start}`` of the calling process (bytes); picklable, so a
    client can run it on every worker."""
    return {"rss": rss_bytes(), "peak": peak_rss_bytes()}


class PeakMemory:
    """Highest resident memory (bytes) of this process while the block runs, sampled every
    5 ms by a thread (torch releases the GIL in its kernels, so the samples keep coming)."""

    def __enter__(self) -> PeakMemory:
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
