"""Like for like on simulated and real TrackML events, with no truth used: the share of hits in
tracks of >= 5 hits, tracks of >= 5 hits against particles with nhits >= 5, and track lengths.
Similar figures mean the models see real data as they see simulation.

    PYTHONPATH=. .venv/bin/python benchmarks/real_vs_sim.py [DIR ...] [--event-index I] [--models DIR]

(default: ``data/test`` and ``../shared/data/trackml/kaggle_train_1``, the first event of each).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from trackflow.events import list_events
from trackflow.pipeline.pipeline import Pipeline

DEFAULT_DIRS = ("data/test", "../shared/data/trackml/kaggle_train_1")


def track_figures(pipeline: Pipeline, directory: Path, index: int) -> dict:
    """Reconstruct event ``index`` of ``directory`` from its hits; compare with its particles."""
    event = list_events(directory)[index].load(("hits", "particles"))
    result = pipeline(event.hits_only())
    sizes = pd.Series(result.track_labels).value_counts()
    long = sizes[sizes >= 5]
    nhits = event.particles["nhits"]
    return {
        "directory": str(directory),
        "event_id": event.event_id,
        "hits": result.counts["hits"],
        "share_of_hits_in_tracks_min5": float(long.sum() / result.counts["hits"]),
        "tracks_min5": len(long),
        "particles_nhits_min5": int((nhits >= 5).sum()),
        "track_length_median": float(long.median()),
        "track_length_mean": float(long.mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", type=Path, default=[Path(d) for d in DEFAULT_DIRS])
    parser.add_argument("--event-index", type=int, default=0)
    parser.add_argument("--models", type=Path, default=None, help="model directory (default: shipped)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    pipeline = Pipeline.load(args.models, threads=args.threads)
    rows = [track_figures(pipeline, d, args.event_index) for d in args.dirs]
    print("| | " + " | ".join(r["directory"] for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for key in rows[0]:
        if key != "directory":
            print(
                f"| {key} | "
                + " | ".join(f"{r[key]:.3g}" if isinstance(r[key], float) else str(r[key]) for r in rows)
                + " |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
