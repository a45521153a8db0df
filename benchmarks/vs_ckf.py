"""trackflow vs the classical baseline (ACTS seeding + CKF + greedy ambiguity resolution), side by side.

One run, one process, one thread each, on the same simulated events, interleaved event by event
(and alternating which goes first) so that the machine's drift hits both alike:

- **trackflow**: ``Pipeline.load(--models, threads=1)`` called on ``event.hits_only()`` as
  ``trackflow reconstruct --mode direct`` runs it (features + the five stages, no Dask); time =
  that call (s);
- **ACTS CKF**: :func:`trackflow.classical.reconstruct_event` (pyacts, one
  thread); time = its five ACTS algorithms (space points, seeding, parameter estimation, CKF,
  ambiguity resolution; the Python glue that converts hits and reads tracks back is left out,
  which favours the CKF), with the whole call's wall time beside it.

Both submissions (event_id, hit_id, track_id) go to ``--work``/submissions and are scored by
:func:`trackflow.metrics.score_submission`, the scorer of ``trackflow score``: efficiency at
pT > 1 and > 0.5 GeV (>= 5 hits, two-way 50 % match), fake and duplicate rates, TrackML score
(``../shared/REFERENCE.md`` §3).

Conditions:

- **real kinematics**: the held-out TrackML event 1020's particles (``--real-particles``) as
  they are (the file's own ~5 mm beam spot, every vertex), re-simulated with Fatras as
  ``trackflow simulate --particles-from FILE --seed SEED`` would (each event turned by its own
  random azimuth), noise 0.15;
- **beam spot**: the robustness matrix's cells ``sigma_z`` in ``--sigma-z`` (mm) at full density,
  noise 0.15 (``benchmarks/robustness.py``: ``cell_config`` / ``ensure_cell``, cached under
  ``--cells-work``, the same cache as the robustness matrix's, so its events are reused).

Writes ``--out``/vs_ckf.json (everything) and vs_ckf.md (the table).

    .venv/bin/python benchmarks/vs_ckf.py [--events 2] [--sigma-z 5,25,55] [--no-real]
        [--seed 2718] [--models DIR] [--out benchmarks/results/vs_ckf]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from robustness import KAGGLE_DIR, REPO, Cell, cell_config, ensure_cell, held_out_dir, machine

from trackflow.classical import ClassicalTrackingConfig, prepare, reconstruct_event
from trackflow.events import Event, list_events, write_submission
from trackflow.events.simulation import SimulationConfig
from trackflow.metrics import score_submission, secondary_counts
from trackflow.pipeline import Pipeline

METHODS = ("trackflow", "ckf")
LABELS = {"trackflow": "trackflow (shipped models, 1 thread)", "ckf": "ACTS seeding + CKF + greedy AR"}
NOISE = 0.15


@dataclasses.dataclass(frozen=True)
class RealKinematics:
    """One TrackML particles file re-simulated as it is (its beam spot, all vertices); the
    ``name`` and fields that ``ensure_cell`` of robustness.py keys its cache by."""

    event: int
    noise: float

    @property
    def name(self) -> str:
        return f"real{self.event}_n{self.noise:g}"

    def label(self) -> str:
        return f"real kinematics, event {self.event} (its own σ_z ≈ 5 mm), noise {self.noise:g}"


def conditions(args: argparse.Namespace) -> list[tuple[Any, SimulationConfig, Path]]:
    """(condition, simulation config, cache root) of each condition, in the order they run."""
    out: list[tuple[Any, SimulationConfig, Path]] = []
    if not args.no_real:
        real = RealKinematics(event=int(args.real_particles.name[5:14]), noise=NOISE)
        config = SimulationConfig(seed=args.seed, particles_from=args.real_particles, noise_fraction=NOISE)
        out.append((real, config, args.work))
    particles = held_out_dir(args.cells_work, args.held_out)
    for sigma_z in args.sigma_z:
        cell = Cell(sigma_z, 1.0, NOISE)
        out.append((cell, cell_config(cell, args.seed, particles), args.cells_work))
    return out


def run_trackflow(pipeline: Pipeline, event: Event) -> tuple[Any, dict[str, Any]]:
    start = time.perf_counter()
    tracks = pipeline(event.hits_only())
    seconds = time.perf_counter() - start
    timing = {"seconds": seconds, "stages": dict(tracks.timings), "counts": dict(tracks.counts)}
    return tracks.to_frame(), timing


def run_ckf(config: ClassicalTrackingConfig, event: Event) -> tuple[Any, dict[str, Any]]:
    tracks = reconstruct_event(event.hits_only(), config)
    return tracks.to_frame(), {
        "seconds": tracks.seconds,
        "wall_seconds": tracks.wall_seconds,
        "stages": tracks.timings,
        "counts": tracks.counts,
    }


def warm_up(pipeline: Pipeline, ckf: ClassicalTrackingConfig, event: Event) -> None:
    """One small slice of an event through both, untimed: first-call costs stay out of the table."""
    hits = event.hits.iloc[: min(5000, event.n_hits)].reset_index(drop=True)
    small = Event(event.event_id, hits)
    pipeline(small)
    reconstruct_event(small, ckf)


def measure(
    condition: Any,
    directory: Path,
    n_events: int,
    pipeline: Pipeline,
    ckf: ClassicalTrackingConfig,
    submissions: Path,
    turn: int,
) -> tuple[dict[str, Any], int]:
    """Both methods on events 0..n_events-1 of ``directory``, interleaved; scores and times."""
    frames: dict[str, list] = {m: [] for m in METHODS}
    per_event: list[dict[str, Any]] = []
    for ref in list_events(directory, list(range(n_events))):
        event = ref.load(("hits",))
        order = METHODS if turn % 2 == 0 else METHODS[::-1]
        turn += 1
        record: dict[str, Any] = {"event_id": ref.event_id, "hits": event.n_hits, "first": order[0]}
        for method in order:
            frame, timing = run_trackflow(pipeline, event) if method == "trackflow" else run_ckf(ckf, event)
            frames[method].append(frame)
            record[method] = timing
        per_event.append(record)
        print(
            f"  {condition.name} event {ref.event_id}: {event.n_hits} hits; trackflow "
            f"{record['trackflow']['seconds']:.2f} s, CKF {record['ckf']['seconds']:.2f} s "
            f"({record['ckf']['wall_seconds']:.2f} s with glue)",
            flush=True,
        )
    result: dict[str, Any] = {"condition": condition.name, "label": condition.label(), "events": per_event}
    for method in METHODS:
        path = write_submission(submissions / f"{condition.name}_{method}.csv", frames[method])
        scores, split = score_with_secondaries(directory, path)
        counts = scores["counts"]
        seconds = [e[method]["seconds"] for e in per_event]
        result[method] = {
            "submission": str(path),
            "seconds_per_event": float(np.mean(seconds)),
            "seconds": seconds,
            **{
                k: scores[k]
                for k in ("efficiency", "efficiency_pt05", "fake_rate", "duplicate_rate", "trackml_score")
            },
            # primaries and secondaries (produced > 1 mm from the beam line) apart: the CKF's seeds
            # need |d0| < impact_max, the pipeline's edge features assume the beam line too
            "efficiency_primary": (counts["matched"] - split["matched_secondary"])
            / max(counts["reconstructable"] - split["reconstructable_secondary"], 1),
            "efficiency_secondary": split["matched_secondary"] / max(split["reconstructable_secondary"], 1),
            "secondary_share": split["reconstructable_secondary"] / max(counts["reconstructable"], 1),
            "counts": {**counts, **split},
        }
    result["ckf"]["wall_seconds_per_event"] = float(np.mean([e["ckf"]["wall_seconds"] for e in per_event]))
    trackflow_seconds = result["trackflow"]["seconds_per_event"]
    result["time_ratio"] = trackflow_seconds / result["ckf"]["seconds_per_event"]
    result["time_ratio_wall"] = trackflow_seconds / result["ckf"]["wall_seconds_per_event"]
    return result, turn


def score_with_secondaries(directory: Path, submission: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """``score_submission`` of the events, and the secondaries' counts (``secondary_counts``)
    summed over them."""
    split: dict[str, int] = {}

    def count(scored: Any, event: Event, tracks: Any) -> None:
        for key, value in secondary_counts(scored, event.particles).items():
            split[key] = split.get(key, 0) + value

    return score_submission(directory, submission, on_event=count), split


def measure_kaggle(
    directory: Path, n_events: int, pipeline: Pipeline, ckf: ClassicalTrackingConfig, turn: int
) -> dict[str, Any]:
    """Both methods on the first ``n_events`` real Kaggle events (hits and particles, no truth),
    interleaved: tracks with >= 5 hits ÷ particles with nhits >= 5 (the particles file's count,
    before any detector inefficiency: a truth-free ratio, not an efficiency), and seconds."""
    rows = []
    for ref in list_events(directory)[:n_events]:
        event = ref.load(("hits", "particles"))
        particles = int((event.particles["nhits"] >= 5).sum())
        row: dict[str, Any] = {
            "event_id": ref.event_id,
            "hits": event.n_hits,
            "particles_nhits_min5": particles,
        }
        for method in METHODS if turn % 2 == 0 else METHODS[::-1]:
            frame, timing = run_trackflow(pipeline, event) if method == "trackflow" else run_ckf(ckf, event)
            sizes = frame.groupby("track_id").size()
            row[method] = {"seconds": timing["seconds"], "tracks_min5": int((sizes >= 5).sum())}
            row[method]["ratio"] = row[method]["tracks_min5"] / max(particles, 1)
        turn += 1
        rows.append(row)
        print(
            f"  kaggle event {ref.event_id}: {event.n_hits} hits; ratio trackflow "
            f"{row['trackflow']['ratio']:.3f} ({row['trackflow']['seconds']:.2f} s), CKF "
            f"{row['ckf']['ratio']:.3f} ({row['ckf']['seconds']:.2f} s)",
            flush=True,
        )
    return {"directory": str(directory), "events": rows}


def peak_rss_gib(models: Path | None, event_dir: Path) -> float:
    """Peak resident memory (GiB) of a fresh process that loads the pipeline (one thread) and
    reconstructs the first event of ``event_dir`` -- trackflow alone, none of ACTS."""
    code = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from trackflow.events import list_events\n"
        "from trackflow.pipeline import Pipeline\n"
        "models = None if sys.argv[1] == '-' else Path(sys.argv[1])\n"
        "event = list_events(Path(sys.argv[2]))[0].load(('hits',))\n"
        "Pipeline.load(models, threads=1)(event)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(models) if models else "-", str(event_dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.split()[-1]) / 2**20  # ru_maxrss is in KiB on Linux


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f} %"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| condition | method | hits/event | s/event (1 thread) | trackflow ÷ CKF | eff. pT > 1 | "
        "primary / secondary (share) | eff. pT > 0.5 | fake | duplicate | TrackML score |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["conditions"]:
        hits = np.mean([e["hits"] for e in row["events"]])
        for method in METHODS:
            m = row[method]
            seconds = f"{m['seconds_per_event']:.2f}"
            if method == "ckf":
                seconds += f" ({m['wall_seconds_per_event']:.2f} with glue)"
            ratio = f"{row['time_ratio']:.2f} ({row['time_ratio_wall']:.2f})" if method == "trackflow" else ""
            label = row["label"] if method == "trackflow" else ""
            lines.append(
                f"| {label} | {LABELS[method]} | {hits:,.0f} | {seconds} | {ratio} | "
                f"{_pct(m['efficiency'])} | {_pct(m.get('efficiency_primary'))} / "
                f"{_pct(m.get('efficiency_secondary'))} ({_pct(m.get('secondary_share'))}) | "
                f"{_pct(m['efficiency_pt05'])} | {_pct(m['fake_rate'], 2)} | "
                f"{_pct(m['duplicate_rate'], 2)} | {m['trackml_score']:.3f} |"
            )
    kaggle = result.get("kaggle")
    if kaggle and kaggle["events"]:
        lines += [
            "",
            f"Real Kaggle events ({kaggle['directory']}; no truth): tracks with ≥ 5 hits ÷ particles with "
            "nhits ≥ 5, and s/event, one thread each, interleaved.",
            "",
            "| event | hits | particles nhits ≥ 5 | trackflow ratio | CKF ratio | trackflow s | CKF s | "
            "trackflow ÷ CKF |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in kaggle["events"]:
            t, c = row["trackflow"], row["ckf"]
            cells = (
                row["event_id"], f"{row['hits']:,}", f"{row['particles_nhits_min5']:,}",
                f"{t['ratio']:.3f}", f"{c['ratio']:.3f}", f"{t['seconds']:.2f}", f"{c['seconds']:.2f}",
                f"{t['seconds'] / c['seconds']:.2f}",
            )  # fmt: skip
            lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    if result.get("peak_rss_gib") is not None:
        lines += [
            "",
            f"Peak RSS of trackflow alone on one full real event: {result['peak_rss_gib']:.2f} GiB.",
        ]
    return "\n".join(lines) + "\n"


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2, help="events per condition")
    parser.add_argument("--sigma-z", type=_floats, default=[5.0, 25.0, 55.0], help="beam-spot cells, mm")
    parser.add_argument("--no-real", action="store_true", help="leave out the real-kinematics condition")
    parser.add_argument("--real-particles", type=Path, default=KAGGLE_DIR / "event000001020-particles.csv.gz")
    parser.add_argument("--held-out", type=Path, default=KAGGLE_DIR, help="folder of the held-out particles")
    parser.add_argument("--seed", type=int, default=2718, help="simulation seed (robustness.py's default)")
    parser.add_argument(
        "--kaggle",
        type=int,
        default=0,
        help="also the first N real Kaggle events of --held-out (no truth): truth-free ratio",
    )
    parser.add_argument("--models", type=Path, default=None, help="model directory (default: shipped)")
    parser.add_argument(
        "--work", type=Path, default=REPO / "data" / "vs_ckf", help="real events and the submissions"
    )
    parser.add_argument(
        "--cells-work", type=Path, default=REPO / "data" / "robustness", help="cache of the robustness cells"
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "vs_ckf")
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="measure nothing: rewrite --out/vs_ckf.md from this vs_ckf.json",
    )
    args = parser.parse_args(argv)
    if args.from_json is not None:
        write_outputs(json.loads(args.from_json.read_text()), args.out)
        return 0
    if args.events < 1:
        parser.error("--events must be >= 1")

    start = time.perf_counter()
    result: dict[str, Any] = {
        "command": "python benchmarks/vs_ckf.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "pyacts": importlib.metadata.version("pyacts"),
        "threads": 1,
        "events_per_condition": args.events,
        "seed": args.seed,
        "timing": {
            "trackflow": "pipeline(event.hits_only()), Pipeline.load(threads=1): features + five stages",
            "ckf": "the five ACTS algorithms from the sequencer's timing.csv (numThreads=1); "
            "'with glue' adds the Python conversion of hits and read-out of tracks",
        },
    }
    ckf = ClassicalTrackingConfig()
    result["ckf_config"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(ckf).items()}
    todo = conditions(args)
    directories = []
    for condition, config, work in todo:
        t0 = time.perf_counter()
        directory, _ = ensure_cell(condition, config, work, args.events)
        directories.append(directory)
        print(f"{condition.name}: events in {directory} ({time.perf_counter() - t0:.0f} s)", flush=True)
    pipeline = Pipeline.load(args.models, threads=1)
    result["models"] = str(pipeline.models_dir)
    prepare(ckf)
    warm_up(pipeline, ckf, list_events(directories[0])[0].load(("hits",)))
    submissions = args.work / "submissions"
    submissions.mkdir(parents=True, exist_ok=True)
    result["conditions"] = []
    turn = 0
    for (condition, _, _), directory in zip(todo, directories, strict=True):
        row, turn = measure(condition, directory, args.events, pipeline, ckf, submissions, turn)
        result["conditions"].append(row)
    if args.kaggle:
        result["kaggle"] = measure_kaggle(args.held_out, args.kaggle, pipeline, ckf, turn)
        result["peak_rss_gib"] = peak_rss_gib(args.models, args.held_out)
    result["load_at_end"] = os.getloadavg()[0]
    result["seconds"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vs_ckf.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    write_outputs(result, args.out)
    print(f"wrote {args.out / 'vs_ckf.json'} and vs_ckf.md in {result['seconds']:.0f} s")
    return 0


def write_outputs(result: dict[str, Any], out: Path) -> None:
    """vs_ckf.md: the command, the machine and the table; the table also on stdout."""
    table = markdown(result)
    header = (
        f"# trackflow vs ACTS CKF\n\n`{result['command']}` — {result['machine']}, "
        f"{result['load_at_end']:.1f} at the end; pyacts {result['pyacts']}; "
        f"{result['events_per_condition']} events per condition, one thread each, interleaved "
        "event by event. s/event: trackflow's whole call; CKF's five ACTS algorithms (with the "
        "Python glue that converts hits and reads tracks back in brackets). trackflow ÷ CKF: "
        "against the algorithms (against the call with glue).\n\n"
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "vs_ckf.md").write_text(header + table)
    print(table)


if __name__ == "__main__":
    sys.exit(main())
