"""Where `trackflow bench`'s Dask overhead goes on small events (issue 30): one fused batch of the
16 events on a 1-worker LocalCluster, timed as the bench times it (client-observed batch latency
minus in-task time), after the bench's warm-up (2 batches), with the scheduler's transitions.

    .venv/bin/python benchmarks/results/vs_triton/floor_cut/bench_overhead.py /tmp/vt_events 4 [PAUSE_S]

PAUSE_S: seconds to wait before each timed batch (Dask's batched streams hold a message up to
10 / 5 / 2 ms after a recent send: a pause shows what the previous batch's messages cost).
"""

from __future__ import annotations

import sys
import time

import trackflow
from trackflow.run.batching import Batch
from trackflow.run.executors import make_executor
from trackflow.run.plugin import PipelinePlugin


def main() -> None:
    events, repeats = sys.argv[1], int(sys.argv[2])
    pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    refs = trackflow.list_events(events)[:16]
    with trackflow.open_cluster("local", workers=1, threads_per_worker=1) as opened:
        client = opened.client
        plugin = PipelinePlugin(None, "cpu", 1, None)
        client.register_plugin(plugin)
        executor = make_executor("fused", client=client, plugin_name=plugin.name, max_in_flight=1)
        list(executor.execute([Batch(i, tuple(refs), None) for i in range(2)]))  # the bench's warm-up
        for k in range(repeats):
            time.sleep(pause)
            (result,) = executor.execute([Batch(100 + k, tuple(refs), None)])
            task = sum(t.stop - t.start for t in result.tasks)
            first, overhead = result.tasks[0], result.latency_s - task
            print(
                f"batch of {len(refs)}: latency {result.latency_s * 1e3:.1f} ms, "
                f"in-task {task * 1e3:.1f} ms, overhead {overhead * 1e3:.1f} ms ({overhead / task:.2%}); "
                f"submit -> task start {(first.start - result.submitted) * 1e3:.1f} ms, "
                f"task end -> result on the client {(result.received - result.tasks[-1].stop) * 1e3:.1f} ms",
                flush=True,
            )


if __name__ == "__main__":
    main()
