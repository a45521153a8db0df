"""Classical baseline: ACTS seeding + CKF + greedy ambiguity resolution on TrackML event files.

Reads the events of EVENTS_DIR (hits only; e.g. written by ``trackflow simulate``), reconstructs
each with :func:`trackflow.classical.reconstruct_event` (pyacts, one thread) and
writes, in ``--out``:

- ``submission.csv``: event_id, hit_id, track_id, every hit exactly once, the format that
  ``trackflow reconstruct`` writes, so that one scorer scores both:
  ``trackflow score EVENTS_DIR OUT/submission.csv``;
- ``ckf_times.json``: per event the seconds (one thread) of the five ACTS algorithms, of each
  step, of the whole call, and the counts (hits, CKF tracks, resolved tracks, shared hits).

    .venv/bin/python benchmarks/ckf_baseline.py EVENTS_DIR --out OUT [--event-id N ...]
        [--min-pt 0.5] [--detectors detectors.csv.gz]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import sys
from pathlib import Path

from trackflow.classical import ClassicalTrackingConfig, prepare, reconstruct_event
from trackflow.events import list_events, write_submission


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events_dir", type=Path)
    parser.add_argument(
        "--out", type=Path, required=True, help="directory for submission.csv and ckf_times.json"
    )
    parser.add_argument("--event-id", type=int, action="append", default=None, help="only these (repeatable)")
    parser.add_argument(
        "--min-pt", type=float, default=ClassicalTrackingConfig.min_pt, help="seeding's lowest pT (GeV)"
    )
    parser.add_argument(
        "--detectors",
        type=Path,
        default=None,
        help="detectors.csv the events were simulated with (default: trackflow's)",
    )
    args = parser.parse_args(argv)

    config = ClassicalTrackingConfig(min_pt=args.min_pt, detectors=args.detectors)
    refs = list_events(args.events_dir, args.event_id)
    if not refs:
        parser.error(f"no events in {args.events_dir}")
    prepare(config)
    args.out.mkdir(parents=True, exist_ok=True)
    frames, records = [], []
    for ref in refs:
        event = ref.load(("hits",))
        tracks = reconstruct_event(event, config)
        frames.append(tracks.to_frame())
        records.append(
            {
                "event_id": tracks.event_id,
                "seconds": tracks.seconds,
                "wall_seconds": tracks.wall_seconds,
                "timings": tracks.timings,
                "counts": tracks.counts,
            }
        )
        print(
            f"event {tracks.event_id}: {tracks.counts['hits']} hits -> {tracks.counts['tracks']} tracks, "
            f"{tracks.seconds:.2f} s ACTS, {tracks.wall_seconds:.2f} s in all (one thread)"
        )
    submission = write_submission(args.out / "submission.csv", frames)
    summary = {
        "events_dir": str(args.events_dir),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(config).items()},
        "pyacts": importlib.metadata.version("pyacts"),
        "machine": f"{platform.node()} ({platform.machine()}), python {platform.python_version()}",
        "events": records,
    }
    (args.out / "ckf_times.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {submission}; score it with: trackflow score {args.events_dir} {submission}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
