"""Soak (issue 7): thousands of small events through a 2-worker LocalCluster.

Events are thin phi slices of the pixel hits of the 9 real TrackML events (a few hundred hits
each), written once to EVENTS_DIR. The run must end with 0 failures; the report's
``memory.rss_growth`` (median worker RSS of the last 100 events ÷ the first 100, − 1) is the
figure recorded in benchmarks/README.md.

    DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False \
        python benchmarks/soak.py /tmp/soak/events /tmp/soak/out --events 2000
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from trackflow.cluster import ClusterOptions
from trackflow.events import Event, list_events, write_event
from trackflow.pipeline import Pipeline
from trackflow.run.reconstruct import ReconstructConfig, reconstruct

SHARED = Path(
    os.environ.get("TRACKFLOW_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
COLUMNS = ["hit_id", "x", "y", "z", "volume_id", "layer_id", "module_id"]


def make_events(out: Path, count: int, width_rad: float = 0.025) -> None:
    """``count`` events, each the pixel hits of one phi slice (``width_rad``) of a real event."""
    out.mkdir(parents=True, exist_ok=True)
    slices = int(2 * np.pi / width_rad)
    made = 0
    for ref in list_events(SHARED / "trackml" / "kaggle_train_1"):
        hits = ref.load(("hits",)).hits
        pixel = hits[hits["volume_id"].isin([7, 8, 9])]
        for i in range(slices):
            if made == count:
                return
            low = -np.pi + i * width_rad
            part = pixel[(pixel["phi"] >= low) & (pixel["phi"] < low + width_rad)]
            write_event(Event(event_id=100000 + made, hits=part[COLUMNS].reset_index(drop=True)), out)
            made += 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("events_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument(
        "--random-init", action="store_true", help="untrained models instead of the shipped ones"
    )
    args = parser.parse_args()
    if not args.events_dir.exists():
        make_events(args.events_dir, args.events)
    start = time.time()
    run = reconstruct(
        ReconstructConfig(
            input_dir=args.events_dir,
            out_dir=args.out_dir,
            mode="fused",
            cluster=ClusterOptions(workers=args.workers),
            batch_size=args.batch_size,
            pipeline_loader=Pipeline.random_init if args.random_init else None,
            overwrite=True,
            progress=False,
        )
    )
    report = run.report
    print("\n".join(run.summary_lines()))
    print(
        json.dumps(
            {
                "wall_total_s": time.time() - start,
                "events": report["events"],
                "memory": report["memory"],
                "dask_overhead": report["dask_overhead"],
                "utilisation": report["workers"]["utilisation"],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
