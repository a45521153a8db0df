"""trackflow serve against a real Triton Inference Server (issue 30): same pipeline, same events,
same cores, same client, one after the other in one run.

Paths (each on the same N = 1, 2 worker processes or model instances, one thread each):

* ``serve``: ``trackflow serve --workers N`` (trackflow.Service on a LocalCluster behind the
  KServe v2 HTTP front end) with trackflow.yaml's defaults; ``serve-actor1`` / ``serve-actor2``:
  actor dispatch with the front end on the Dask client's loop (``service.dispatch: actor``,
  ``service.front_end_loop: client``: each event one call to the pipeline actor of a worker, no
  scheduler trip), 1 or 2 calls per worker thread (``service.calls_per_slot``),
* ``serve-thread``: the defaults with every call on the pipeline's thread (``service.inline_hits``
  0), ``serve-before``: that and one call per worker thread (``calls_per_slot`` 1), what the
  defaults were before the last two changes of issue 30, ``serve-slot1``: the defaults but never
  a call ahead on a busy worker (``calls_per_slot`` 1: every event waits on the client for the
  first free worker),
* ``serve-task``: the same with task dispatch and the front end on its own loop (every event one
  fused Dask task, two per worker thread: the design before actors), ``serve-1``: task dispatch
  with ``--tasks-per-slot 1`` (no task waits on a worker), ``serve-staged``: ``--mode staged`` (a
  Dask task per stage, chained),
* ``custom``: ``trackflow export triton --kind custom --instances N`` in the tritonserver bundled
  with nvidia-pytriton (one Python model runs the whole pipeline),
* ``ensemble``: ``--kind ensemble --instances N`` (one Python model per stage, N instances each,
  chained by Triton's ensemble scheduler),
* ``direct``: the Pipeline in this process, no server (the pipeline's own time per event).

One load generator drives every server: ``tritonclient.http`` (binary tensors), one client per
thread. Closed loop: C requests in flight (C = 1, 2, 4, 8), each thread sending the next event as
soon as its answer is in, for ``--duration`` s after a warm-up; throughput and p50/p95/p99
latency. Open loop: Poisson arrivals at fractions of the Triton custom backend's measured capacity
at the same N, the same arrival times for every path; latency from the scheduled arrival.
``--interleave-closed S``: the closed loop again with the servers of ``--interleave-paths`` up
together, taking turns in blocks of S seconds at each concurrency (the ratio of servers measured
minutes apart moves with a shared machine by more than their difference). ``--interleave-open S``:
the open loop the same way, blocks of S seconds of Poisson arrivals with the same arrival times
for every server, at ``--rates`` of the first server's capacity measured there (or ``--open-hz``).
Per-request floor: each server with a trivial model (track_id = zeros, no pipeline) at
concurrency 1 (trackflow serve with each dispatch, and trackflow.Service alone, without HTTP).
Identity: every path's tracks of every event equal the direct Pipeline's (exactly, label for
label) and ``trackflow reconstruct``'s (the same hits in the same tracks).

Example (2 busy cores: about 20 min; small events ~1.4k hits, full events ~110k hits)::

    .venv/bin/trackflow simulate --out /tmp/vt_events --events 16 --seed 1 --pileup 10 --no-progress
    make venv-triton
    .venv/bin/python benchmarks/vs_triton.py /tmp/vt_events \\
        --full-events ../shared/data/trackml/kaggle_train_1 \\
        --out benchmarks/results/vs_triton

Writes ``OUT/vs_triton.json``, ``OUT/vs_triton.md`` (the tables) and ``OUT/vs_triton.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import trackflow
from trackflow.service.protocol import INPUTS

REPO = Path(__file__).resolve().parents[1]
NUMPY = {"INT64": np.int64, "INT32": np.int32, "FP32": np.float32}

_TRIVIAL_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            hit_id = pb_utils.get_input_tensor_by_name(request, "hit_id").as_numpy()
            zeros = np.zeros(len(hit_id), np.int64)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("track_id", zeros)]))
        return out
"""


# --------------------------------------------------------------------------- the trivial pipeline
class TrivialPipeline:
    """A pipeline that labels every hit 0 at once: the Service's per-request floor."""

    stage_names: tuple[str, ...] = ()

    def prepare(self, event: Any) -> Any:
        return event

    def finish(self, event: Any) -> Any:
        from trackflow.pipeline.graph import EventTracks

        hit_ids = event.hits["hit_id"].to_numpy()
        return EventTracks(int(event.event_id), hit_ids, np.zeros(len(hit_ids), np.int64))


def trivial_loader(**_: Any) -> TrivialPipeline:
    return TrivialPipeline()


def _serve_trivial(workers: int) -> None:
    """Child process: trackflow.Service with the trivial pipeline behind the HTTP front end."""
    sys.path.insert(0, str(Path(__file__).parent))
    import vs_triton  # the loader must be importable by the workers, not __main__'s

    from trackflow.service import Service, ServiceConfig
    from trackflow.service.kserve import KServeServer, ServeConfig

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    config = ServiceConfig(pipeline_loader=vs_triton.trivial_loader)
    with (
        Service.open("local", workers, config) as service,
        KServeServer(service, ServeConfig(http_port=0, grpc=False)) as server,
    ):
        print(f"serving model trackflow on {server.url}", file=sys.stderr, flush=True)
        stop.wait()


# --------------------------------------------------------------------------- servers
#: the settings of each way trackflow serve dispatches (environment of its process; ``default``:
#: trackflow.yaml's, whatever they are)
DISPATCH_ENV: dict[str, dict[str, str]] = {
    "default": {},
    "actor1": {
        "DASK_TRACKFLOW__SERVICE__DISPATCH": "actor",
        "DASK_TRACKFLOW__SERVICE__FRONT_END_LOOP": "client",
        "DASK_TRACKFLOW__SERVICE__CALLS_PER_SLOT": "1",
    },
    "actor2": {
        "DASK_TRACKFLOW__SERVICE__DISPATCH": "actor",
        "DASK_TRACKFLOW__SERVICE__FRONT_END_LOOP": "client",
        "DASK_TRACKFLOW__SERVICE__CALLS_PER_SLOT": "2",
    },
    "task": {"DASK_TRACKFLOW__SERVICE__DISPATCH": "task", "DASK_TRACKFLOW__SERVICE__FRONT_END_LOOP": "own"},
    # Dask's statistical profiler off on the workers (trackflow.yaml's default since issue 30)
    "noprofile": {"DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"},
    # the defaults with every call on the pipeline's thread (service.inline_hits 0)
    "thread": {"DASK_TRACKFLOW__SERVICE__INLINE_HITS": "0"},
    # both of issue 30's last changes off: every call on the pipeline's thread, and one call per
    # worker thread (what calls_per_slot auto was with several workers before the deep backlog)
    "before": {"DASK_TRACKFLOW__SERVICE__INLINE_HITS": "0", "DASK_TRACKFLOW__SERVICE__CALLS_PER_SLOT": "1"},
    # the defaults but never a call ahead on a busy worker (every event waits on the client for
    # the first free worker, as in Triton's queue)
    "slot1": {"DASK_TRACKFLOW__SERVICE__CALLS_PER_SLOT": "1"},
}


@contextlib.contextmanager
def serve_process(
    workers: int, trivial: bool = False, extra: tuple[str, ...] = (), dispatch: str = "default"
) -> Iterator[str]:
    """``trackflow serve`` (or the trivial service) in a child process, with ``dispatch``'s
    settings (:data:`DISPATCH_ENV`); yields host:port."""
    if trivial:
        command = [sys.executable, __file__, "_serve-trivial", str(workers)]
    else:
        command = [
            sys.executable,
            "-m",
            "trackflow",
            "serve",
            "--workers",
            str(workers),
            "--http-port",
            "0",
            "--no-grpc",
            *extra,
        ]
    environment = os.environ | DISPATCH_ENV[dispatch]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=environment) as process:
        try:
            assert process.stderr is not None
            line = process.stderr.readline()
            match = re.search(r"on https?://([\d.]+:\d+)", line)
            if not match:
                raise RuntimeError(f"trackflow serve did not start: {line}{process.stderr.read()[-2000:]}")
            # drain stderr so the child never blocks on a full pipe
            threading.Thread(target=process.stderr.read, daemon=True).start()
            yield match.group(1)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()


@contextlib.contextmanager
def triton_process(
    kind: str, instances: int, environment: Any, work: Path, device: str = "cpu"
) -> Iterator[str]:
    from trackflow.service.triton import TritonExportConfig, TritonServer, export_triton

    repo = work / f"triton-{kind}-{instances}"
    if kind == "trivial":
        model = repo / "trackflow"
        (model / "1").mkdir(parents=True, exist_ok=True)
        (model / "1" / "model.py").write_text(_TRIVIAL_MODEL)
        tensors = [f'{{ name: "{n}" data_type: TYPE_{t[0]} dims: [ -1 ] }}' for n, t in INPUTS.items()]
        (model / "config.pbtxt").write_text(
            'name: "trackflow"\nbackend: "python"\nmax_batch_size: 0\n'
            f"input [ {', '.join(tensors)} ]\n"
            'output [ { name: "track_id" data_type: TYPE_INT64 dims: [ -1 ] } ]\n'
            f"instance_group [ {{ count: {instances} kind: KIND_CPU }} ]\n"
        )
    else:
        export_triton(TritonExportConfig(repo, kind=kind, instances=instances, device=device, overwrite=True))
    with TritonServer(repo, environment) as server:
        yield server.url


# --------------------------------------------------------------------------- the load generator
def encode(hits: pd.DataFrame) -> list[Any]:
    import tritonclient.http as httpclient

    inputs = []
    for name, types in INPUTS.items():
        values = hits[name].to_numpy().astype(NUMPY[types[0]])
        tensor = httpclient.InferInput(name, list(values.shape), types[0])
        tensor.set_data_from_numpy(values, binary_data=True)
        inputs.append(tensor)
    return inputs


class Load:
    """The one load generator: requests to ``url`` from threads, each with its own client."""

    def __init__(self, url: str, requests: list[list[Any]]) -> None:
        self.url = url
        self.requests = requests
        self._local = threading.local()

    def _client(self) -> Any:
        import tritonclient.http as httpclient

        if getattr(self._local, "client", None) is None:
            self._local.client = httpclient.InferenceServerClient(self.url, network_timeout=900)
        return self._local.client

    def gives(self, expected: list[np.ndarray]) -> bool:
        """Every event's tracks from this server equal ``expected`` (label for label); warms it."""
        return all(np.array_equal(self.call(i), want) for i, want in enumerate(expected))

    def call(self, index: int) -> np.ndarray:
        return (
            self._client().infer("trackflow", self.requests[index % len(self.requests)]).as_numpy("track_id")
        )

    def closed(
        self, concurrency: int, duration_s: float, warmup: int = 1, keep_latencies: bool = False
    ) -> dict[str, Any]:
        """C threads each sending the next event as soon as its answer is in (``keep_latencies``:
        every request's latency in s too, under ``latencies_s``)."""
        counter = iter(range(10**9))
        lock = threading.Lock()
        records: list[tuple[float, float]] = []
        failures: list[str] = []
        start_barrier = threading.Barrier(concurrency)
        box: dict[str, float] = {}

        def worker() -> None:
            for _ in range(warmup):
                with lock:
                    index = next(counter)
                self.call(index)
            start_barrier.wait()
            with lock:
                box.setdefault("start", time.perf_counter())
            end = box["start"] + duration_s
            while time.perf_counter() < end:
                with lock:
                    index = next(counter)
                t0 = time.perf_counter()
                try:
                    self.call(index)
                except Exception as error:
                    failures.append(str(error)[:200])
                    continue
                with lock:
                    records.append((t0, time.perf_counter()))

        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        out = summarize(records, box.get("start", 0.0), failures, len(threads))
        if keep_latencies:
            out["latencies_s"] = [end - begin for begin, end in records]
            out["span_s"] = max((end for _, end in records), default=0.0) - box.get("start", 0.0)
        return out

    def open(
        self, rate_hz: float, duration_s: float, seed: int, keep_latencies: bool = False
    ) -> dict[str, Any]:
        """Poisson arrivals at ``rate_hz`` for ``duration_s``; latency from the scheduled arrival
        (``keep_latencies``: every request's, in s, under ``latencies_s``)."""
        rng = np.random.default_rng(seed)
        gaps = rng.exponential(1.0 / rate_hz, size=int(rate_hz * duration_s * 3) + 10)
        arrivals = np.cumsum(gaps)
        arrivals = arrivals[arrivals < duration_s]
        records: list[tuple[float, float]] = []
        failures: list[str] = []
        lock = threading.Lock()
        start = time.perf_counter() + 0.2

        def one(index: int, due: float) -> None:
            try:
                self.call(index)
            except Exception as error:
                failures.append(str(error)[:200])
                return
            with lock:
                records.append((due, time.perf_counter()))

        with ThreadPoolExecutor(max_workers=64) as pool:
            for index, offset in enumerate(arrivals):
                due = start + float(offset)
                time.sleep(max(0.0, due - time.perf_counter()))
                pool.submit(one, index, due)
        result = summarize(records, start, failures, 0)
        result["offered_hz"] = rate_hz
        result["arrivals"] = len(arrivals)
        if keep_latencies:
            result["latencies_s"] = [end - due for due, end in records]
        return result


def summarize(
    records: list[tuple[float, float]], start: float, failures: list[str], concurrency: int
) -> dict[str, Any]:
    latencies = np.array([end - begin for begin, end in records])
    ends = np.array([end for _, end in records])
    span = float(ends.max() - start) if len(ends) else 0.0
    out: dict[str, Any] = {
        "requests": len(records),
        "failures": len(failures),
        "failure_examples": failures[:3],
        "throughput_hz": len(records) / span if span > 0 else 0.0,
    }
    for q in (50, 95, 99):
        out[f"p{q}_s"] = float(np.percentile(latencies, q)) if len(latencies) else None
    if concurrency:
        out["concurrency"] = concurrency
    return out


# --------------------------------------------------------------------------- one run
def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(pd.factorize(a)[0], pd.factorize(b)[0]))


def _gpu_name() -> str:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    return str(torch.cuda.get_device_name(0))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from trackflow.service.triton import triton_environment

    # Triton's stub imports this run's trackflow (the tree of this script), not the one installed
    # in the Triton environment: every path runs the same code and models
    environment = dataclasses.replace(
        triton_environment(args.triton_python), first_paths=(Path(trackflow.__file__).parents[1],)
    )
    work = Path(tempfile.mkdtemp(prefix="vs-triton-"))
    log = lambda message: print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)  # noqa: E731

    refs = trackflow.list_events(args.events)[: args.max_events]
    small = [ref.load(("hits",)) for ref in refs]
    sets: dict[str, list[trackflow.Event]] = {"small": small}
    if args.full_events:
        full_refs = trackflow.list_events(args.full_events)[: args.full_count]
        sets["full"] = [ref.load(("hits",)) for ref in full_refs]
    result: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_start": os.getloadavg(),
            "device": args.device,
            "gpu": _gpu_name() if args.device == "cuda" else None,
        },
        "sets": {
            name: {"events": len(ev), "hits_mean": float(np.mean([len(e.hits) for e in ev]))}
            for name, ev in sets.items()
        },
        "closed": [],
        "open": [],
        "floor": [],
        "direct": {},
        "identity": {},
        "interleaved": [],
        "interleaved_closed": [],
        "interleaved_open": [],
    }

    # direct: the pipeline in this process, one thread (its own time per event)
    from trackflow.pipeline.threads import set_threads

    set_threads(1)
    pipeline = trackflow.Pipeline.load(device=args.device)
    expected: dict[str, list[np.ndarray]] = {}
    for name, events in sets.items():
        pipeline(events[0])  # warm
        times, labels = [], []
        for event in events:
            t0 = time.perf_counter()
            tracks = pipeline(event)
            times.append(time.perf_counter() - t0)
            labels.append(np.asarray(tracks.track_labels))
        expected[name] = labels
        result["direct"][name] = {
            "mean_s": float(np.mean(times)),
            "p50_s": float(np.median(times)),
            "events_per_s_one_core": 1.0 / float(np.mean(times)),
        }
        log(f"direct {name}: {np.mean(times) * 1e3:.1f} ms per event")

    # reconstruct on the small events: the same hits in the same tracks
    report_dir = work / "reconstruct"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "trackflow",
            "reconstruct",
            str(args.events),
            "--out",
            str(report_dir),
            "--workers",
            "1",
            "--device",
            args.device,
            "--no-progress",
            *[arg for r in refs for arg in ("--event-id", str(r.event_id))],
        ],
        check=True,
        capture_output=True,
    )
    submission = pd.read_csv(report_dir / "submission.csv")
    result["identity"]["direct_vs_reconstruct"] = all(
        same_partition(
            labels,
            submission[submission.event_id == e.event_id]
            .set_index("hit_id")["track_id"]
            .reindex(e.hits["hit_id"])
            .to_numpy(),
        )
        for e, labels in zip(small, expected["small"], strict=True)
    )

    encoded = {name: [encode(e.hits) for e in events] for name, events in sets.items()}
    # every server's neural-network stages on --device (serve's workers, Triton's KIND_GPU
    # instances); the trivial models of the floor stay on the CPU
    on = ("--device", args.device)
    paths: dict[str, Callable[[int], contextlib.AbstractContextManager[str]]] = {
        "serve": lambda n: serve_process(n, extra=on),
        "custom": lambda n: triton_process("custom", n, environment, work, args.device),
        "ensemble": lambda n: triton_process("ensemble", n, environment, work, args.device),
    }
    for name in ("task", "actor1", "actor2", "noprofile", "thread", "before", "slot1"):
        paths[f"serve-{name}"] = lambda n, name=name: serve_process(n, extra=on, dispatch=name)
    paths["serve-1"] = lambda n: serve_process(n, extra=(*on, "--tasks-per-slot", "1"), dispatch="task")
    paths["serve-staged"] = lambda n: serve_process(n, extra=(*on, "--mode", "staged"), dispatch="task")
    capacity: dict[tuple[str, int, str], float] = {}
    frozen: dict[int, float] = {}

    def save() -> None:
        # what is measured so far, after each server (a run cut short keeps its points)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "vs_triton.json").write_text(json.dumps(result, indent=1, default=float))

    for number in range(args.passes):
        order = args.paths if number % 2 == 0 else args.paths[::-1]
        for instances in args.instances:
            for path in order:
                t0 = time.perf_counter()
                with paths[path](instances) as url:
                    log(
                        f"pass {number}: {path} x{instances} ready on {url} "
                        f"in {time.perf_counter() - t0:.0f} s"
                    )
                    for name, events in sets.items():
                        if name == "full" and (
                            instances not in args.full_instances or number >= args.full_passes
                        ):
                            continue
                        load = Load(url, encoded[name])
                        key = f"{path}_{name}_x{instances}"
                        try:
                            answers = [load.call(i) for i in range(len(events))]
                        except Exception as error:  # a path that cannot answer is reported, not fatal
                            result["identity"][key] = f"failed: {' '.join(str(error).split())[:300]}"
                            log(f"  {name}: {result['identity'][key]}")
                            continue
                        same = all(np.array_equal(a, b) for a, b in zip(answers, expected[name], strict=True))
                        result["identity"][key] = result["identity"].get(key, True) is True and same
                        concurrencies = args.concurrency if name == "small" else args.full_concurrency
                        duration = args.duration if name == "small" else args.full_duration
                        for concurrency in concurrencies:
                            # a full event's warm-up is the identity check just done
                            row = load.closed(concurrency, duration, warmup=1 if name == "small" else 0)
                            row |= {
                                "path": path,
                                "instances": instances,
                                "set": name,
                                "pass": number,
                                "load_average": os.getloadavg()[0],
                            }
                            result["closed"].append(row)
                            ident = (path, instances, name)
                            capacity[ident] = max(capacity.get(ident, 0.0), row["throughput_hz"])
                            p95 = row["p95_s"] * 1e3 if row["p95_s"] else float("nan")
                            log(
                                f"  {name} c={concurrency}: {row['throughput_hz']:.2f} ev/s, "
                                f"p95 {p95:.0f} ms, "
                                f"{row['requests']} req, {row['failures']} failed, "
                                f"load {row['load_average']:.1f}"
                            )
                    if (
                        (args.rates or args.open_hz)
                        and instances == max(args.instances)
                        and number == args.passes - 1
                    ):
                        # one set of offered rates for every path: fractions of Triton custom's
                        # capacity as first measured (frozen, so a later pass cannot move it), or
                        # --open-hz as given
                        reference = frozen.setdefault(
                            instances,
                            capacity.get(("custom", instances, "small"))
                            or capacity.get((path, instances, "small"), 0.0),
                        )
                        rates = args.open_hz or [fraction * reference for fraction in args.rates]
                        load = Load(url, encoded["small"])
                        for rate in rates:
                            fraction = rate / reference if reference else None
                            row = load.open(rate, args.open_duration, seed=args.seed)
                            row |= {
                                "path": path,
                                "instances": instances,
                                "set": "small",
                                "fraction_of_custom": fraction,
                            }
                            result["open"].append(row)
                            log(
                                f"  open {rate:.2f} Hz: {row['throughput_hz']:.2f} ev/s, "
                                f"p95 {row['p95_s'] * 1e3:.0f} ms"
                            )
                save()
    if args.interleave:
        interleaved(args, paths, sets, encoded, expected, result, log)
        save()
    if args.interleave_closed or args.interleave_closed_full:
        interleaved_closed(args, paths, encoded, expected, result, log)
        save()
    if args.interleave_open:
        interleaved_open(args, paths, encoded, expected, result, log)
        save()
    if args.no_floor:
        result["machine"]["load_average_end"] = os.getloadavg()
        return result
    # the Service alone (no HTTP): its floor with the trivial pipeline, one request at a time
    sys.path.insert(0, str(Path(__file__).parent))
    import vs_triton

    from trackflow.service import Service, ServiceConfig

    for dispatch in ("actor", "task"):
        config = ServiceConfig(pipeline_loader=vs_triton.trivial_loader, dispatch=dispatch)
        with Service.open("local", 1, config) as service:
            hits = small[0].hits
            for _ in range(3):
                service.submit(hits).result()
            latencies = []
            for _ in range(100):
                t0 = time.perf_counter()
                service.submit(hits).result()
                latencies.append(time.perf_counter() - t0)
            timings = service.take_timings()[-100:]
        result["floor"].append(
            {
                "path": f"Service alone, {dispatch} dispatch (no HTTP)",
                "p50_s": float(np.median(latencies)),
                "p95_s": float(np.percentile(latencies, 95)),
                "slot_p50_s": float(np.median([t.slot_s for t in timings])),
                "fetch_p50_s": float(np.median([t.fetch_s for t in timings])),
                "service_p50_s": float(np.median([t.service_s for t in timings])),
            }
        )
        log(f"floor Service alone ({dispatch}): p50 {np.median(latencies) * 1e3:.1f} ms")
    # the per-request floor: trivial models, one instance, one request at a time
    for path, opener in (
        ("serve", lambda: serve_process(1, trivial=True)),
        ("serve-task", lambda: serve_process(1, trivial=True, dispatch="task")),
        ("triton", lambda: triton_process("trivial", 1, environment, work)),
    ):
        with opener() as url:
            load = Load(url, encoded["small"])
            row = load.closed(1, min(args.duration, 5.0), warmup=3)
            row |= {"path": path}
            result["floor"].append(row)
            log(f"floor {path}: p50 {row['p50_s'] * 1e3:.1f} ms")
    result["machine"]["load_average_end"] = os.getloadavg()
    return result


def interleaved(
    args: argparse.Namespace,
    paths: dict[str, Callable[[int], contextlib.AbstractContextManager[str]]],
    sets: dict[str, list[trackflow.Event]],
    encoded: dict[str, list[list[Any]]],
    expected: dict[str, list[np.ndarray]],
    result: dict[str, Any],
    log: Callable[[str], None],
) -> None:
    """One request in flight, the servers of ``--interleave-paths`` up at once and the one load
    generator alternating between them (A B, B A, ...): every server meets the same moments of a
    shared machine, so their ratio at 1 in flight holds where passes minutes apart do not."""
    names = args.interleave_paths
    for instances in args.instances:
        with contextlib.ExitStack() as stack:
            urls = [stack.enter_context(paths[name](instances)) for name in names]
            for set_name in sets:
                rounds = args.interleave if set_name == "small" else args.interleave_full
                if not rounds:
                    continue
                loads = [Load(url, encoded[set_name]) for url in urls]
                same = {name: load.gives(expected[set_name]) for name, load in zip(names, loads, strict=True)}
                latencies: dict[str, list[float]] = {name: [] for name in names}
                load_start = os.getloadavg()[0]
                for i in range(rounds):
                    order = list(zip(names, loads, strict=True))
                    for name, load in order if i % 2 == 0 else order[::-1]:
                        t0 = time.perf_counter()
                        load.call(i)
                        latencies[name].append(time.perf_counter() - t0)
                row: dict[str, Any] = {
                    "set": set_name,
                    "instances": instances,
                    "rounds": rounds,
                    "load_average": [load_start, os.getloadavg()[0]],
                    "identity": same,
                }
                for name in names:
                    values = np.array(latencies[name])
                    row[name] = {
                        "mean_s": float(values.mean()),
                        "p50_s": float(np.median(values)),
                        "p95_s": float(np.percentile(values, 95)),
                    }
                result["interleaved"].append(row)
                log(
                    f"interleaved {set_name} x{instances}: "
                    + ", ".join(
                        f"{name} mean {row[name]['mean_s'] * 1e3:.1f} ms p95 {row[name]['p95_s'] * 1e3:.1f}"
                        for name in names
                    )
                    + f", load {load_start:.1f}-{os.getloadavg()[0]:.1f}"
                )


def interleaved_closed(
    args: argparse.Namespace,
    paths: dict[str, Callable[[int], contextlib.AbstractContextManager[str]]],
    encoded: dict[str, list[list[Any]]],
    expected: dict[str, list[np.ndarray]],
    result: dict[str, Any],
    log: Callable[[str], None],
) -> None:
    """Closed loop at each concurrency, the servers of ``--interleave-paths`` up at once and the
    load generator giving each in turn a block of ``--interleave-closed`` s (A B, B A, ...,
    ``--interleave-blocks`` blocks each): the throughput ratio of servers measured minutes apart
    moves with the shared machine by more than the difference between them; blocks seconds apart
    meet the same machine. Small events, and full ones with ``--interleave-closed-full`` (at
    ``--full-concurrency``, ``--full-instances``); an idle server's cost (heartbeats) is paid by
    both."""
    names = args.interleave_paths
    for instances in args.instances:
        with contextlib.ExitStack() as stack:
            urls = {name: stack.enter_context(paths[name](instances)) for name in names}
            for set_name, events in encoded.items():
                block_s = args.interleave_closed if set_name == "small" else args.interleave_closed_full
                if not block_s or (set_name == "full" and instances not in args.full_instances):
                    continue
                loads = {name: Load(url, events) for name, url in urls.items()}
                same = {name: load.gives(expected[set_name]) for name, load in loads.items()}
                concurrencies = args.concurrency if set_name == "small" else args.full_concurrency
                for concurrency in concurrencies:
                    row = _interleaved_blocks(args, loads, concurrency, block_s, set_name)
                    row |= {"set": set_name, "instances": instances, "identity": same}
                    result["interleaved_closed"].append(row)
                    log(
                        f"interleaved closed {set_name} x{instances} c={concurrency}: "
                        + ", ".join(
                            f"{n} {row[n]['throughput_hz']:.2f} ev/s p95 {row[n]['p95_s'] * 1e3:.0f} ms"
                            for n in names
                        )
                        + f", load {row['load_average'][0]:.1f}-{row['load_average'][1]:.1f}"
                    )


def _take_turns(
    names: list[str], count: int, block: Callable[[str, int], dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """``count`` blocks per server, the servers taking turns (A B, B A, ...): ``block(name,
    number)`` runs one (its dict holds ``latencies_s``); per server, its blocks in order."""
    blocks: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for number in range(count):
        for name in names if number % 2 == 0 else names[::-1]:
            blocks[name].append(block(name, number))
    return blocks


def _pooled(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """One server's blocks together: requests, failures, p50 / p95 / p99 over all latencies (s)."""
    latencies = np.concatenate([b["latencies_s"] for b in blocks])
    return {
        "requests": int(sum(b["requests"] for b in blocks)),
        "failures": int(sum(b["failures"] for b in blocks)),
        **{f"p{q}_s": float(np.percentile(latencies, q)) for q in (50, 95, 99)},
    }


def _interleaved_blocks(
    args: argparse.Namespace, loads: dict[str, Load], concurrency: int, block_s: float, set_name: str
) -> dict[str, Any]:
    """The servers' closed-loop blocks at one concurrency, taking turns: a row per point."""
    load_start = os.getloadavg()[0]
    # a full event's warm-up would be seconds per block: the identity check warmed them
    warmup = 1 if set_name == "small" else 0
    blocks = _take_turns(
        list(loads),
        args.interleave_blocks,
        lambda name, _: loads[name].closed(concurrency, block_s, warmup=warmup, keep_latencies=True),
    )
    row: dict[str, Any] = {
        "concurrency": concurrency,
        "block_s": block_s,
        "blocks": args.interleave_blocks,
        "load_average": [load_start, os.getloadavg()[0]],
    }
    for name, mine in blocks.items():
        row[name] = _pooled(mine) | {
            "throughput_hz": float(sum(b["requests"] for b in mine) / sum(b["span_s"] for b in mine)),
            "block_throughput_hz": [b["throughput_hz"] for b in mine],
        }
    return row


def interleaved_open(
    args: argparse.Namespace,
    paths: dict[str, Callable[[int], contextlib.AbstractContextManager[str]]],
    encoded: dict[str, list[list[Any]]],
    expected: dict[str, list[np.ndarray]],
    result: dict[str, Any],
    log: Callable[[str], None],
) -> None:
    """Open loop with the servers of ``--interleave-paths`` up at once: at each offered rate,
    blocks of ``--interleave-open`` s of Poisson arrivals, the servers taking turns (A B, B A,
    ..., ``--interleave-blocks`` each), block k of every server with the same arrival times (seed
    ``--seed`` + k); p50 / p95 / p99 over all of a server's requests, latency from the scheduled
    arrival. Rates: ``--open-hz``, else ``--rates`` × the first server's capacity measured there
    (closed loop at the largest ``--concurrency``, its blocks taking turns like the others'), so
    the p95 ratio is at the same offered load, measured at one moment of the shared machine."""
    names = args.interleave_paths
    for instances in args.instances:
        with contextlib.ExitStack() as stack:
            urls = {name: stack.enter_context(paths[name](instances)) for name in names}
            loads = {name: Load(url, encoded["small"]) for name, url in urls.items()}
            same = {name: load.gives(expected["small"]) for name, load in loads.items()}
            capacity = None
            if not args.open_hz:
                top = max(args.concurrency or [8])
                row = _interleaved_blocks(args, loads, top, args.interleave_open, "small")
                capacity = float(row[names[0]]["throughput_hz"])
                log(f"interleaved open x{instances}: {names[0]} capacity {capacity:.2f} ev/s at c={top}")
            rates = args.open_hz or [fraction * (capacity or 0.0) for fraction in args.rates]
            for rate in rates:
                load_start = os.getloadavg()[0]
                # block k of every server: the same arrival times (seed + k)
                blocks = _take_turns(
                    names,
                    args.interleave_blocks,
                    lambda name, number, rate=rate, loads=loads: loads[name].open(
                        rate, args.interleave_open, args.seed + number, keep_latencies=True
                    ),
                )
                row = {
                    "set": "small",
                    "instances": instances,
                    "offered_hz": rate,
                    "fraction_of_capacity": rate / capacity if capacity else None,
                    "capacity_hz": capacity,
                    "block_s": args.interleave_open,
                    "blocks": args.interleave_blocks,
                    "identity": same,
                    "load_average": [load_start, os.getloadavg()[0]],
                }
                for name, mine in blocks.items():
                    row[name] = _pooled(mine) | {
                        "arrivals": int(sum(b["arrivals"] for b in mine)),
                        "block_p95_s": [float(np.percentile(b["latencies_s"], 95)) for b in mine],
                    }
                result["interleaved_open"].append(row)
                log(
                    f"interleaved open x{instances} {rate:.2f} Hz: "
                    + ", ".join(
                        f"{n} p50 {row[n]['p50_s'] * 1e3:.0f} p95 {row[n]['p95_s'] * 1e3:.0f} ms"
                        for n in names
                    )
                    + f", load {row['load_average'][0]:.1f}-{row['load_average'][1]:.1f}"
                )


def interleaved_open_table(result: dict[str, Any]) -> list[str]:
    rows = result.get("interleaved_open") or []
    if not rows:
        return []
    names, lines = _servers_table_head(
        rows,
        "block_p95_s",
        "Open loop (Poisson arrivals), the servers up together, taking turns in blocks with the same "
        "arrival times (latency from the scheduled arrival; ratios ÷ {base}: p95, and p50 in brackets; "
        "per-block p95 ratios' range):",
        ["N", "offered Hz", "of capacity", "blocks × s"],
        "p50 / p95 / p99 ms",
        ["identical", "answered / arrivals", "failed", "load"],
    )
    base = names[0]
    for r in rows:
        share = f"{r['fraction_of_capacity']:.2f}" if r.get("fraction_of_capacity") else "–"
        cells = [str(r["instances"]), f"{r['offered_hz']:.1f}", share, f"{r['blocks']} × {r['block_s']:g}"]
        cells += [
            f"{r[n]['p50_s'] * 1e3:.0f} / {r[n]['p95_s'] * 1e3:.0f} / {r[n]['p99_s'] * 1e3:.0f}"
            for n in names
        ]
        for n in names[1:]:
            per_block = np.array(r[n]["block_p95_s"]) / np.array(r[base]["block_p95_s"])
            cells.append(
                f"**{r[n]['p95_s'] / r[base]['p95_s']:.2f}** ({r[n]['p50_s'] / r[base]['p50_s']:.2f}; "
                f"{per_block.min():.2f}–{per_block.max():.2f})"
            )
        cells += [
            str(all(r["identity"].values())),
            " / ".join(f"{r[n]['requests']}/{r[n]['arrivals']}" for n in names),
            str(sum(r[n]["failures"] for n in names)),
            "–".join(f"{v:.1f}" for v in r["load_average"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _servers_table_head(
    rows: list[dict[str, Any]], marker: str, title: str, lead: list[str], cell: str, tail: list[str]
) -> tuple[list[str], list[str]]:
    """The servers of interleaved ``rows`` (their entries holding ``marker``, the first the
    base of the ratios) and a table's ``title`` (``{base}``: that server) and header: ``lead``
    columns, ``cell`` per server, a ratio per server after the first, ``tail`` columns."""
    names = [k for k in rows[0] if isinstance(rows[0][k], dict) and marker in rows[0][k]]
    columns = [*lead, *(f"{n} {cell}" for n in names), *(f"{n} ÷ {names[0]}" for n in names[1:]), *tail]
    head = [title.format(base=names[0]), "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return names, head


def interleaved_closed_table(result: dict[str, Any]) -> list[str]:
    rows = result.get("interleaved_closed") or []
    if not rows:
        return []
    names, lines = _servers_table_head(
        rows,
        "throughput_hz",
        "Closed loop, the servers up together and the load generator taking turns between them in "
        "blocks (events/s over every block; ratios ÷ {base}: throughput, and p95 in brackets; "
        "per-block ratios' range):",
        ["set", "N", "in flight", "blocks × s"],
        "ev/s / p95 ms",
        ["identical", "failed", "load"],
    )
    base = names[0]
    for r in rows:
        cells = [r["set"], str(r["instances"]), str(r["concurrency"]), f"{r['blocks']} × {r['block_s']:g}"]
        cells += [f"{r[n]['throughput_hz']:.3g} / {r[n]['p95_s'] * 1e3:.0f}" for n in names]
        for n in names[1:]:
            per_block = np.array(r[n]["block_throughput_hz"]) / np.array(r[base]["block_throughput_hz"])
            cells.append(
                f"**{r[n]['throughput_hz'] / r[base]['throughput_hz']:.3f}** "
                f"({r[n]['p95_s'] / r[base]['p95_s']:.2f}; {per_block.min():.2f}–{per_block.max():.2f})"
            )
        cells += [
            str(all(r["identity"].values())),
            str(sum(r[n]["failures"] for n in names)),
            "–".join(f"{v:.1f}" for v in r["load_average"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def interleaved_table(result: dict[str, Any]) -> list[str]:
    rows = result.get("interleaved") or []
    if not rows:
        return []
    names, lines = _servers_table_head(
        rows,
        "mean_s",
        "One request in flight, the servers up together and requests alternating between them "
        "(throughput at 1 in flight = 1 / mean latency; ratios ÷ {base}):",
        ["set", "N", "requests each"],
        "mean / p95 ms",
        ["identical", "load"],
    )
    base = names[0]
    for r in rows:
        cells = [r["set"], str(r["instances"]), str(r["rounds"])]
        cells += [f"{r[n]['mean_s'] * 1e3:.1f} / {r[n]['p95_s'] * 1e3:.1f}" for n in names]
        cells += [f"{r[base]['mean_s'] / r[n]['mean_s']:.3f}" for n in names[1:]]
        cells += [str(all(r["identity"].values())), "–".join(f"{v:.1f}" for v in r["load_average"])]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


# --------------------------------------------------------------------------- report
def tables(result: dict[str, Any]) -> str:
    closed = pd.DataFrame(result["closed"])
    lines = [
        f"Command: `{result['command']}`",
        "",
        f"Machine: {result['machine']['cores']} cores, {result['machine']['platform']}; load average "
        f"{result['machine']['load_average_start'][0]:.1f} at start, "
        f"{result['machine']['load_average_end'][0]:.1f} "
        "at end (other engineers' jobs share the cores).",
        "Neural-network stages on: "
        f"{result['machine'].get('gpu') or result['machine'].get('device', 'cpu')}.",
        "",
    ]
    for name, info in result["sets"].items():
        direct = result["direct"][name]
        lines.append(
            f"Set `{name}`: {info['events']} events, {info['hits_mean']:.0f} hits on average; direct "
            f"pipeline {direct['mean_s'] * 1e3:.0f} ms per event on one core."
        )
    lines += [
        "",
        "Identity (tracks equal to the direct Pipeline's, label for label; direct vs reconstruct: same "
        "hits in the same tracks):",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in result["identity"].items()]
    lines += ["", "Closed loop: throughput (events/s) and p95 (ms)", ""] if len(closed) else [""]
    for (name, instances), group in closed.groupby(["set", "instances"]) if len(closed) else []:
        pivot_t = group.pivot_table(
            index="concurrency", columns="path", values="throughput_hz", aggfunc="mean"
        )
        pivot_p = group.pivot_table(index="concurrency", columns="path", values="p95_s", aggfunc="mean") * 1e3
        header = ["C"] + [f"{p} ev/s" for p in pivot_t.columns] + [f"{p} p95 ms" for p in pivot_p.columns]
        served = [p for p in pivot_t.columns if p.startswith("serve")] if "custom" in pivot_t.columns else []
        header += [f"{p}/custom" for p in served]
        if {"custom", "ensemble"} <= set(pivot_t.columns):
            header += ["serve/ensemble", "custom/ensemble"]
        lines += [
            f"`{name}` events, {instances} worker(s) / instance(s):",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for c in pivot_t.index:
            cells = [str(c)] + [f"{pivot_t.loc[c, p]:.2f}" for p in pivot_t.columns]
            cells += [f"{pivot_p.loc[c, p]:.0f}" for p in pivot_p.columns]
            row = pivot_t.loc[c]
            cells += [f"{row[p] / row['custom']:.2f}" for p in served]
            if "custom/ensemble" in header:
                cells += [
                    f"{row['serve'] / row['ensemble']:.2f}" if "serve" in row else "-",
                    f"{row['custom'] / row['ensemble']:.2f}",
                ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += ratio_table(closed)
    lines += interleaved_table(result)
    lines += interleaved_closed_table(result)
    lines += interleaved_open_table(result)
    if result["open"]:
        open_ = pd.DataFrame(result["open"])
        lines += [
            "Open loop (Poisson; the same offered rates for every path: --open-hz, or fractions of "
            "Triton custom's closed-loop capacity at the same N):",
            "",
            "| path | offered Hz | achieved ev/s | p50 ms | p95 ms | p99 ms | failed |",
            "|---|---|---|---|---|---|---|",
        ]
        for _, r in open_.iterrows():
            lines.append(
                f"| {r.path} | {r.offered_hz:.2f} | {r.throughput_hz:.2f} | {r.p50_s * 1e3:.0f} | "
                f"{r.p95_s * 1e3:.0f} | {r.p99_s * 1e3:.0f} | {r.failures} |"
            )
        lines.append("")
    if not result["floor"]:
        return "\n".join(lines) + "\n"
    lines += [
        "Per-request floor (trivial model: track_id = zeros; 1 worker / instance, 1 request in flight):",
        "",
        "| server | p50 ms | p95 ms |",
        "|---|---|---|",
    ]
    for r in result["floor"]:
        lines.append(f"| {r['path']} | {r['p50_s'] * 1e3:.1f} | {r['p95_s'] * 1e3:.1f} |")
    return "\n".join(lines) + "\n"


def ratio_table(closed: pd.DataFrame) -> list[str]:
    """serve paths ÷ Triton custom, throughput, per pass (each pass's own pair of points) and
    their mean and range: what one run says, and how far its passes agree."""
    if closed.empty or "custom" not in set(closed.path) or "pass" not in closed:
        return []
    lines = [
        "Closed loop, throughput ÷ Triton custom's in the same pass: mean [min–max over passes] "
        "(passes alternate the order of the paths); load average at the points:",
        "",
        "| set | N | C | path | ratio | passes | p95 ÷ custom's | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = ["set", "instances", "concurrency", "pass"]
    custom = closed[closed.path == "custom"].set_index(keys)
    for path in sorted(p for p in set(closed.path) if p != "custom"):
        rows = closed[closed.path == path].set_index(keys)
        both = rows.merge(custom, left_index=True, right_index=True, suffixes=("", "_custom"))
        for (name, instances, concurrency), group in both.groupby(level=[0, 1, 2]):
            ratio = group.throughput_hz / group.throughput_hz_custom
            p95 = group.p95_s / group.p95_s_custom
            loads = group.get("load_average", pd.Series(dtype=float))
            load = f"{loads.min():.1f}–{loads.max():.1f}" if len(loads.dropna()) else "-"
            lines.append(
                f"| {name} | {instances} | {concurrency} | {path} | {ratio.mean():.2f} "
                f"[{ratio.min():.2f}–{ratio.max():.2f}] | {len(ratio)} | {p95.mean():.2f} | {load} |"
            )
    return [*lines, ""]


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    closed = pd.DataFrame(result["closed"])
    if closed.empty:
        return
    groups = list(closed.groupby(["set", "instances"]))
    fig, axes = plt.subplots(2, len(groups), figsize=(4.5 * len(groups), 7), squeeze=False)
    for column, ((name, instances), group) in enumerate(groups):
        for p, rows in group.groupby("path"):
            mean = rows.groupby("concurrency")[["throughput_hz", "p95_s"]].mean()  # over the passes
            axes[0][column].plot(mean.index, mean.throughput_hz, marker="o", label=p)
            axes[1][column].plot(mean.index, mean.p95_s * 1e3, marker="o", label=p)
        axes[0][column].set_title(f"{name} events, N={instances}")
        axes[0][column].set_ylabel("events/s")
        axes[1][column].set_ylabel("p95 latency (ms)")
        axes[1][column].set_xlabel("requests in flight")
        axes[0][column].set_xscale("log", base=2)
        axes[1][column].set_xscale("log", base=2)
        axes[0][column].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "_serve-trivial":
        _serve_trivial(int(sys.argv[2]))
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--report-only":
        # the tables and the plot again from a vs_triton.json
        source = Path(sys.argv[2])
        result = json.loads(source.read_text())
        (source.parent / "vs_triton.md").write_text(tables(result))
        plot(result, source.parent / "vs_triton.png")
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("events", type=Path, help="small events (TrackML CSV), e.g. ~1.4k hits each")
    parser.add_argument("--full-events", type=Path, default=None, help="full events (~110k hits)")
    parser.add_argument("--full-count", type=int, default=2)
    parser.add_argument("--max-events", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/vs_triton"))
    parser.add_argument("--paths", default="custom,ensemble,serve,serve-task,serve-staged,serve-1")
    parser.add_argument(
        "--passes", type=int, default=1, help="the paths take turns this many times (order reversed)"
    )
    parser.add_argument("--instances", default="1,2")
    parser.add_argument("--concurrency", default="1,2,4,8")
    parser.add_argument("--full-concurrency", default="1,2")
    parser.add_argument("--full-instances", default="2", help="workers / instances for the full events")
    parser.add_argument("--full-passes", type=int, default=1, help="passes that measure the full events")
    parser.add_argument("--duration", type=float, default=8.0, help="s per closed-loop point (small events)")
    parser.add_argument(
        "--full-duration", type=float, default=25.0, help="s per closed-loop point (full events)"
    )
    parser.add_argument("--rates", default="0.5,0.8", help="open loop: fractions of Triton custom's capacity")
    parser.add_argument("--open-duration", type=float, default=15.0)
    parser.add_argument("--open-hz", default="", help="open loop at these rates (Hz) instead of --rates")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-floor", action="store_true", help="skip the per-request floor (trivial models)")
    parser.add_argument(
        "--interleave", type=int, default=0, help="requests per server, 1 in flight, servers alternating"
    )
    parser.add_argument("--interleave-full", type=int, default=0, help="the same on the full events")
    parser.add_argument("--interleave-paths", default="custom,serve", help="the servers interleaved")
    parser.add_argument(
        "--interleave-closed",
        type=float,
        default=0.0,
        help="closed loop at each --concurrency, the servers up together, turns of this many s",
    )
    parser.add_argument(
        "--interleave-closed-full", type=float, default=0.0, help="the same on the full events, s per turn"
    )
    parser.add_argument(
        "--interleave-open",
        type=float,
        default=0.0,
        help="open loop at --rates of the first --interleave-paths server's capacity (or --open-hz), "
        "the servers up together, turns of this many s with the same arrivals",
    )
    parser.add_argument(
        "--interleave-blocks", type=int, default=6, help="blocks per server (--interleave-closed, -open)"
    )
    parser.add_argument("--triton-python", type=Path, default=REPO / ".venv" / "triton" / "bin" / "python")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="the neural-network stages of every path: serve's workers, Triton's instances (cuda: "
        "KIND_GPU), the direct pipeline and reconstruct",
    )
    args = parser.parse_args()
    args.paths = [p for p in args.paths.split(",") if p]
    args.interleave_paths = [p for p in args.interleave_paths.split(",") if p]
    args.instances = [int(v) for v in args.instances.split(",") if v]
    args.concurrency = [int(v) for v in args.concurrency.split(",") if v]
    args.full_concurrency = [int(v) for v in args.full_concurrency.split(",") if v]
    args.full_instances = [int(v) for v in args.full_instances.split(",") if v]
    args.rates = [float(v) for v in args.rates.split(",") if v]
    args.open_hz = [float(v) for v in args.open_hz.split(",") if v]
    # SIGTERM unwinds like Ctrl-C: the servers' context managers stop them (tritonserver runs in a
    # session of its own and would outlive this process)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vs_triton.json").write_text(json.dumps(result, indent=1, default=float))
    text = tables(result)
    (args.out / "vs_triton.md").write_text(text)
    plot(result, args.out / "vs_triton.png")
    print(text)


if __name__ == "__main__":
    main()
