"""Cross-check of the simulation against real data: TrackML event 1001's particles through ACTS.

Simulates the particles of the real event (no azimuthal rotation) and compares hits per volume
with the real event's hits (which include about 17.5k noise hits), and hits per particle by pT,
matching simulated to real particles one to one. Prints markdown tables (and writes them to
``--out`` if given).

    PYTHONPATH=. .venv/bin/python benchmarks/sim_crosscheck.py [--event 1001] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from trackflow.events.event import VOLUME_IDS
from trackflow.events.simulation import (
    SimulationConfig,
    encode_barcode,
    simulate_event,
    trackml_to_acts_particles,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "trackml" / "kaggle_train_1"
VOLUME_NAMES = {
    7: "pixel -endcap", 8: "pixel barrel", 9: "pixel +endcap",
    12: "short strip -endcap", 13: "short strip barrel", 14: "short strip +endcap",
    16: "long strip -endcap", 17: "long strip barrel", 18: "long strip +endcap",
}  # fmt: skip


def markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---:" if frame[c].dtype.kind in "if" else "---" for c in frame.columns) + "|"
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _cell(value: object) -> str:
    if isinstance(value, float | np.floating):
        return f"{value:,.2f}"
    if isinstance(value, int | np.integer):
        return f"{value:,}"
    return str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--event", type=int, default=1001)
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    particles_file = args.data / f"event{args.event:09d}-particles.csv.gz"
    real_hits = pd.read_csv(args.data / f"event{args.event:09d}-hits.csv.gz")
    real_particles = pd.read_csv(particles_file)
    config = SimulationConfig(seed=args.seed, particles_from=particles_file, rotate_phi=False)
    start = time.perf_counter()
    event = simulate_event(config, 0, event_id=args.event)
    seconds = time.perf_counter() - start
    truth = event.truth.set_index("hit_id").loc[event.hits["hit_id"]]
    is_noise = truth["particle_id"].to_numpy() == 0

    real_signal = int(real_particles["nhits"].sum())
    per_volume = pd.DataFrame({"volume_id": list(VOLUME_IDS)})
    per_volume["volume"] = per_volume["volume_id"].map(VOLUME_NAMES)

    def count(values: object) -> np.ndarray:
        return pd.Series(values).value_counts().reindex(VOLUME_IDS).fillna(0).astype(int).to_numpy()

    per_volume["real hits (incl. noise)"] = count(real_hits["volume_id"])
    per_volume["sim particle hits"] = count(event.hits["volume_id"].to_numpy()[~is_noise])
    per_volume["sim noise hits"] = count(event.hits["volume_id"].to_numpy()[is_noise])
    per_volume["sim all hits"] = per_volume["sim particle hits"] + per_volume["sim noise hits"]
    per_volume["sim / real"] = per_volume["sim all hits"] / per_volume["real hits (incl. noise)"]
    # the real event's noise per volume, if its particle hits were distributed like the simulated
    # ones (scaled to the real total): tests the noise model (uniform over modules)
    scale = real_signal / per_volume["sim particle hits"].sum()
    per_volume["implied real noise"] = (
        (per_volume["real hits (incl. noise)"] - scale * per_volume["sim particle hits"]).round().astype(int)
    )
    total = per_volume.drop(columns=["volume_id", "volume"]).sum()
    total["sim / real"] = total["sim all hits"] / total["real hits (incl. noise)"]
    per_volume = pd.concat(
        [per_volume.drop(columns="volume_id"), pd.DataFrame([{"volume": "**all**", **total.to_dict()}])],
        ignore_index=True,
    )
    for column in per_volume.columns[1:]:
        if column != "sim / real":
            per_volume[column] = per_volume[column].astype(int)

    # one-to-one match of particles: the barcode the simulation gave each real particle
    acts_input = trackml_to_acts_particles(real_particles)
    charged = real_particles[real_particles["q"] != 0].reset_index(drop=True)
    charged["sim_id"] = encode_barcode(acts_input)
    sim_nhits = event.particles.set_index("particle_id")["nhits"]
    charged["sim nhits"] = sim_nhits.reindex(charged["sim_id"]).fillna(0).to_numpy()
    charged["pt"] = np.hypot(charged["px"], charged["py"])
    bins = [0.0, 0.2, 0.3, 0.5, 1.0, 2.0, np.inf]
    charged["pT bin (GeV)"] = pd.cut(charged["pt"], bins, right=False).astype(str)
    charged["r0"] = np.hypot(charged["vx"], charged["vy"])
    per_pt = (
        charged.groupby("pT bin (GeV)", sort=False)
        .agg(
            particles=("pt", "size"),
            real_mean=("nhits", "mean"),
            sim_mean=("sim nhits", "mean"),
            real_zero=("nhits", lambda s: float((s == 0).mean())),
            sim_zero=("sim nhits", lambda s: float((s == 0).mean())),
        )
        .reset_index()
    )
    per_pt["order"] = per_pt["pT bin (GeV)"].str.extract(r"\[([0-9.]+)").astype(float)
    per_pt = per_pt.sort_values("order").drop(columns="order")
    per_pt.columns = ["pT bin (GeV)", "particles", "real nhits/particle", "sim nhits/particle",
                      "real share 0 hits", "sim share 0 hits"]  # fmt: skip
    secondary = charged["r0"] > 10.0  # produced away from the beam line (decays, interactions)

    lines = [
        f"## Simulation cross-check: real TrackML event {args.event} vs its particles through ACTS Fatras",
        "",
        f"Command: `PYTHONPATH=. .venv/bin/python benchmarks/sim_crosscheck.py --event {args.event}` "
        f"(seed {args.seed}, smeared digitization, noise fraction {config.noise_fraction}); "
        f"simulation of the event took {seconds:.1f} s on one core.",
        "",
        f"- real: {len(real_hits):,} hits = {real_signal:,} particle hits (sum of nhits) + "
        f"{len(real_hits) - real_signal:,} noise ({(len(real_hits) - real_signal) / len(real_hits):.1%}); "
        f"{len(real_particles):,} particles",
        f"- simulated: {event.n_hits:,} hits = {int((~is_noise).sum()):,} particle hits + "
        f"{int(is_noise.sum()):,} noise ({is_noise.mean():.1%}); {len(event.particles):,} particles "
        f"({len(charged):,} from the real file)",
        f"- particle hits, simulated / real: {(~is_noise).sum() / real_signal:.2f}; "
        f"particles produced more than 10 mm from the beam line: real mean nhits "
        f"{charged.loc[secondary, 'nhits'].mean():.2f}, "
        f"simulated {charged.loc[secondary, 'sim nhits'].mean():.2f}",
        "",
        "### Hits per volume",
        "",
        markdown(per_volume),
        "",
        "### Hits per particle by pT (same particles, matched one to one)",
        "",
        markdown(per_pt),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
