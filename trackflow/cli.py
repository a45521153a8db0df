"""The ``trackflow`` command: parse, call one function, print. No logic lives here.

Imports of the heavy rooms happen inside each command so that ``trackflow --help`` is instant.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from trackflow.errors import TrackflowError

if TYPE_CHECKING:
    from trackflow.cluster.options import ClusterOptions

F = TypeVar("F", bound=Callable[..., Any])

EXISTING_DIR = click.Path(exists=True, file_okay=False, path_type=Path)
EXISTING_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
OUT_DIR = click.Path(file_okay=False, path_type=Path)
CLUSTER_HELP = (
    "local | a scheduler address (tcp://, tls://) | slurm-cpu | slurm-gpu | slurm-mixed | a profile name"
)


def setting(key: str) -> Callable[[], Any]:
    """An option's default: the setting ``key`` of ``trackflow.yaml`` (through :mod:`trackflow.config`,
    so a dask config file or ``DASK_TRACKFLOW__...`` applies), read when the command runs. Pair it
    with ``show_default=key``: the help names where the value comes from instead of repeating it."""

    def default() -> Any:
        from trackflow import config

        return config.get(key)

    return default


def user_errors(command: F) -> F:
    """Turn errors a user can cause into one line on stderr and exit code 2; keep tracebacks for bugs."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TrackflowError as error:
            click.echo(f"trackflow: error: {error}", err=True)
            sys.exit(error.exit_code)  # 2; 4 for an output that could not be written (full disk)

    return wrapper  # type: ignore[return-value]


def int_list(value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError as error:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from error


def batch_size_option(value: str | None) -> int | str | None:
    """``--batch-size``: a number of events, or ``auto`` (sized from the events' hits)."""
    if value is None or value == "auto":
        return value
    if not value.isdigit() or int(value) < 1:
        raise click.BadParameter(f"expected a number of events >= 1 or 'auto', got {value!r}")
    return int(value)


def adapt_range(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        low, high = (int(v) for v in value.split(":"))
    except ValueError as error:
        raise click.BadParameter(f"expected MIN:MAX, got {value!r}") from error
    if not 0 <= low <= high:
        raise click.BadParameter(f"expected 0 <= MIN <= MAX, got {value!r}")
    return low, high


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="trackflow")
def main() -> None:
    """GNN-based charged-particle tracking (Exa.TrkX) as a Dask batch workflow."""


# --------------------------------------------------------------------------- events
@main.command()
@click.argument("events_dir", type=EXISTING_DIR)
@click.argument("submission_csv", type=EXISTING_FILE)
@click.option(
    "--plots",
    "plots_dir",
    type=OUT_DIR,
    default=None,
    help="Also write efficiency vs pT and eta (PNG, with efficiency.json) and an event display here.",
)
@user_errors
def score(events_dir: Path, submission_csv: Path, plots_dir: Path | None) -> None:
    """Score SUBMISSION_CSV (event_id,hit_id,track_id) against the truth in EVENTS_DIR.

    Prints one JSON object: trackml_score, efficiency (pT > 1 GeV), efficiency_pt05, fake_rate,
    duplicate_rate and the counts behind them; with --plots also plots, the files written.
    """
    if plots_dir is None:
        from trackflow.metrics import score_submission

        click.echo(json.dumps(score_submission(events_dir, submission_csv), indent=2))
        return
    from trackflow.run.tracking_plots import score_with_plots

    summary, paths = score_with_plots(events_dir, submission_csv, plots_dir)
    click.echo(json.dumps({**summary, "plots": [str(p) for p in paths]}, indent=2))


@main.command()
@click.argument("events_dir", type=EXISTING_DIR)
@click.option("--event-id", "event_ids", type=int, multiple=True, help="Only these events (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@user_errors
def inspect(events_dir: Path, event_ids: tuple[int, ...], as_json: bool) -> None:
    """Per event in EVENTS_DIR: hits, particles, noise fraction, hits per volume."""
    import pandas as pd

    from trackflow.events.summary import summarize_events

    summaries = summarize_events(events_dir, event_ids=event_ids or None)
    if as_json:
        click.echo(json.dumps(summaries, indent=2))
    else:
        click.echo(pd.json_normalize(summaries, sep=" ").to_string(index=False))


@main.command()
@click.option("--out", "out_dir", type=OUT_DIR, required=True, help="Directory for the TrackML CSV.gz files.")
@click.option("--events", "n_events", type=click.IntRange(min=1), required=True, help="Number of events.")
@click.option(
    "--seed",
    type=int,
    default=setting("simulation.seed"),
    show_default="simulation.seed",
    help="Seed; the same seed gives identical files.",
)
@click.option(
    "--first-event",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Id of the first event: several runs (other conditions) can fill one directory.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Simulate events in parallel on a LocalCluster with this many processes.",
)
@click.option(
    "--pileup",
    type=click.IntRange(min=1),
    default=None,
    help="Particle gun: number of vertices (pileup mu) per event.",
)
@click.option("--particles-per-vertex", type=click.IntRange(min=1), default=None)
@click.option("--pt-min", type=float, default=None, help="Particle gun: minimum pT (GeV).")
@click.option("--pt-max", type=float, default=None, help="Particle gun: maximum pT (GeV).")
@click.option("--eta-max", type=float, default=None, help="Particle gun: |eta| range.")
@click.option(
    "--particles-from",
    type=click.Path(path_type=Path),
    default=None,
    help="Propagate real TrackML particles files instead of a gun: a directory, one file or a glob pattern.",
)
@click.option(
    "--digitization",
    type=click.Choice(["smeared", "geometric"]),
    default=setting("simulation.digitization"),
    show_default="simulation.digitization",
    help="Gaussian smearing (pitch/sqrt(12)) or geometric with cells.",
)
@click.option(
    "--noise-fraction",
    type=click.FloatRange(0.0, 0.9),
    default=None,
    help="Fraction of all hits that are noise (default: simulation.noise_fraction).",
)
@click.option(
    "--sigma-z",
    "beam_sigma_z",
    type=click.FloatRange(min=0.0),
    default=None,
    help="Beam spot length (mm): every primary vertex's z drawn from N(0, SIGMA). Default: the "
    "gun's simulation.sigma_z; with --particles-from, the file's own vertices (about 5 mm in the "
    "Kaggle events). "
    "The HL-LHC luminous region is about 50 mm.",
)
@click.option(
    "--flat-z",
    "beam_flat_z",
    type=click.FloatRange(min=0.0),
    default=None,
    help="With --particles-from: every primary vertex's z uniform in +-HALF mm instead of Gaussian "
    "(training data with no preferred z).",
    metavar="HALF",
)
@click.option(
    "--sigma-xy",
    "beam_sigma_xy",
    type=click.FloatRange(min=0.0),
    default=None,
    help="Beam spot width (mm) in x and y, as --sigma-z (default: the gun's simulation.sigma_xy, or "
    "the file's).",
)
@click.option(
    "--vertex-shift",
    type=(float, float, float),
    default=None,
    metavar="X Y Z",
    help="Move every vertex by this offset (mm), e.g. a displaced beam spot: --vertex-shift 0 0 20.",
)
@click.option(
    "--vertex-fraction",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=None,
    help="Keep this fraction of the vertices, drawn at random per event: a lower pileup "
    "(density) than the file's or --pileup's (default: simulation.vertex_fraction).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace events of --out that have this run's ids (without it, such a run is refused).",
)
@click.option("--progress/--no-progress", default=True, show_default=True)
@user_errors
def simulate(
    out_dir: Path,
    n_events: int,
    seed: int,
    first_event: int,
    workers: int,
    overwrite: bool,
    progress: bool,
    **options: Any,
) -> None:
    """Simulate events with ACTS Fatras (Generic Detector = TrackML detector) into TrackML CSV.

    Beam conditions (--sigma-z, --sigma-xy, --vertex-shift), density (--vertex-fraction) and
    noise (--noise-fraction) apply to the gun and to real kinematics (--particles-from) alike.
    Every event is seeded by (seed, event id): the same command gives the same files. The events
    appear in --out only once all are written, so a failed run leaves --out as it was.
    """
    from trackflow.events.simulation import SimulationConfig
    from trackflow.run.parallel_simulation import simulate as run_simulation

    given = {k: v for k, v in options.items() if v is not None}
    config = SimulationConfig(seed=seed, **given)
    paths = run_simulation(
        config,
        out_dir,
        n_events,
        workers=workers,
        progress=progress,
        first_event=first_event,
        overwrite=overwrite,
    )
    click.echo(f"wrote {len(paths)} events to {out_dir}")


# --------------------------------------------------------------------------- pipeline
@main.command()
@click.option("--data", "data_dir", type=EXISTING_DIR, required=True, help="Training events (with truth).")
@click.option("--out", "out_dir", type=OUT_DIR, required=True, help="Model directory to write.")
@click.option("--val", "val_dir", type=EXISTING_DIR, default=None, help="Validation events (with truth).")
@click.option("--epochs-embedding", type=click.IntRange(min=0), default=None)
@click.option("--epochs-filter", type=click.IntRange(min=0), default=None)
@click.option("--epochs-gnn", type=click.IntRange(min=0), default=None)
@click.option("--max-events", type=click.IntRange(min=1), default=None, help="Use at most this many events.")
@click.option(
    "--edge-events",
    type=click.IntRange(min=1),
    default=None,
    help="Events whose graphs train the filter and GNN (default: training.edge_events).",
)
@click.option("--pt-min", type=float, default=None, help="Target particles above this pT (GeV).")
@click.option(
    "--embedding-from",
    type=EXISTING_DIR,
    default=None,
    help="Reuse the embedding of this model directory; train only the later stages.",
)
@click.option(
    "--filter-from",
    type=EXISTING_DIR,
    default=None,
    help="Reuse the embedding, graph building and filter of this model directory; train only the GNN.",
)
@click.option(
    "--gnn-from",
    type=EXISTING_DIR,
    default=None,
    help="Start the GNN from this directory's GNN (fine-tuning; with --epochs-gnn 0 it only "
    "re-chooses the GNN cut and labelling on --val). Reuses its embedding and filter too, unless "
    "--filter-from names another filter (same embedding) for the GNN to adapt to, or "
    "--retrain-filter trains a new one.",
)
@click.option(
    "--graph-from",
    type=EXISTING_DIR,
    default=None,
    help="With --filter-from (or --gnn-from): the graph building (layer map) of this model directory "
    "(same embedding) instead of the kept filter's own.",
)
@click.option(
    "--retrain-filter",
    is_flag=True,
    default=None,
    help="With --gnn-from: learn a new layer map and filter on that directory's embedding and "
    "fine-tune its GNN on their graphs.",
)
@click.option(
    "--gnn-iterations",
    type=click.IntRange(min=1),
    default=None,
    help="GNN message-passing iterations (default 4, or the --gnn-from GNN's; weights are shared "
    "across iterations, so a warm start may change it).",
)
@click.option(
    "--gnn-hidden",
    type=click.IntRange(min=4),
    default=None,
    help="Width of the GNN's node and edge networks (default 32). With --gnn-from: a "
    "multiple of that GNN's width, which starts widened, computing the same function.",
)
@click.option(
    "--filter-pair-features",
    is_flag=True,
    default=None,
    help="The filter also reads each hit pair's physics (dr, dphi, dz, deta, dphi/dr, "
    "z0): fewer false edges at the same efficiency.",
)
@click.option(
    "--filter-hidden",
    type=click.IntRange(min=1),
    default=None,
    help="Width of the filter's hidden layers (default 128), when a filter is trained.",
)
@click.option(
    "--filter-layers",
    type=click.IntRange(min=1),
    default=None,
    help="Hidden layers of the filter (default 3), when a filter is trained.",
)
@click.option(
    "--gnn-learning-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Peak learning rate of the GNN (default 4e-3).",
)
@click.option(
    "--filter-cut",
    type=click.FloatRange(0, 1, max_open=True),
    default=None,
    help="The filter's cut, instead of the one chosen on the validation events (or, with "
    "--filter-from, kept from its manifest).",
)
@click.option(
    "--triplet-keep",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Learn triplet pruning from the training events' truth (trackflow.pipeline.triplets): "
    "each barrel volume's best-chi2 cut keeps this fraction of its pT > 0.9 GeV truth edges.",
)
@click.option(
    "--triplet-cut",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Triplet pruning with this best-chi2 cut in every barrel volume (scales learned from "
    "the training events' truth); the GNN trains on the pruned graphs.",
)
@click.option(
    "--gnn-targets",
    type=click.Choice(["same_particle", "consecutive"]),
    default=None,
    help="What the GNN learns to find: any two hits of one particle (default), or consecutive "
    "hits (truth edges; true edges that skip a hit weigh 0, fakes --gnn-fake-weight).",
)
@click.option(
    "--gnn-fake-weight",
    type=click.FloatRange(min=0),
    default=None,
    help="Loss weight of an edge joining two particles (--gnn-targets consecutive; default 1).",
)
@click.option(
    "--gnn-displaced-weight",
    type=click.FloatRange(min=0),
    default=None,
    help="Loss weight multiplier of the target edges of secondaries, particles produced more than "
    "1 mm from the beam line (--gnn-targets consecutive; default 1).",
)
@click.option(
    "--gnn-triplet-inputs",
    is_flag=True,
    default=None,
    help="The GNN also reads each edge's triplet agreement with its neighbours (needs triplet "
    "pruning: --triplet-cut, or a reused filter that has it); from a --gnn-from GNN without them, "
    "the new inputs start at weight 0 (the same function).",
)
@click.option(
    "--max-fake-rate",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="The labelling chosen on --val is the most efficient with at most this fake rate (default 0.01).",
)
@click.option(
    "--max-duplicate-rate",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="... and at most this duplicate rate (default 0.01).",
)
@click.option(
    "--gnn-max-edges",
    type=click.IntRange(min=1000),
    default=None,
    help="Edges per GNN training step (default 30000): the phi sector is sized to hold this many.",
)
@click.option(
    "--graph-method",
    type=click.Choice(["layer_map", "radius"]),
    default=None,
    help="Graph building: the detector's layer map learned from the training events "
    "(default; holds at any beam spot) or the embedding-space radius.",
)
@click.option(
    "--layer-map-pt-min",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="The layer map's cuts come from the truth edges of particles above this pT (GeV; default 0.9).",
)
@click.option(
    "--layer-map-field-factor",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Cap each azimuth window of the layer map at this many times the bend of a "
    "--layer-map-pt-min particle in the 2 T field (default: no cap).",
)
@click.option(
    "--layer-map-margin",
    type=click.FloatRange(min=0),
    default=None,
    help="Widen the layer map's azimuth and z0 cuts by this fraction (default 0.1).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads (default: cores).")
@click.option("--quiet", is_flag=True, help="No progress log (losses, cuts, metrics) on stderr.")
@user_errors
def train(quiet: bool, **options: Any) -> None:
    """Train embedding, filter and GNN in turn; write weights and manifest.json to --out."""
    from trackflow.pipeline.training import TrainingConfig
    from trackflow.pipeline.training import train as run_training

    training_log(quiet)

    config = TrainingConfig(**{k: v for k, v in options.items() if v is not None})
    model_dir = run_training(config)
    click.echo(f"models written to {model_dir}")


def training_log(quiet: bool) -> None:
    """Training and distillation take minutes to hours: unless ``quiet``, their progress log
    (losses, epochs, checkpoints, cuts) goes to stderr."""
    import logging

    if not quiet:
        logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
        logging.getLogger("trackflow.pipeline.training").setLevel(logging.INFO)


# --------------------------------------------------------------------------- workflow
def cluster_options(command: F) -> F:
    """Options shared by reconstruct, bench, stream and serve: where the workers come from
    (:func:`cluster_from` makes them one ClusterOptions), and which models run on which device."""
    options = [
        click.option("--cluster", default="local", show_default=True, help=CLUSTER_HELP),
        click.option(
            "--scheduler-file",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Connect to the scheduler written to this file (batch mode, slurm/trackflow.sbatch).",
        ),
        click.option(
            "--adapt",
            "adapt",
            default=None,
            callback=lambda _c, _p, v: adapt_range(v),
            help="Adaptive SLURM CPU jobs MIN:MAX.",
        ),
        click.option(
            "--profile",
            "profile_file",
            type=EXISTING_FILE,
            default=None,
            help="A dask-jobqueue YAML overriding the shipped profiles (trackflow/cluster/jobqueue.yaml).",
        ),
        click.option("--insecure", is_flag=True, help="No TLS on a SLURM cluster (TLS is on by default)."),
        click.option(
            "--models",
            "models_dir",
            type=EXISTING_DIR,
            default=None,
            help="Model directory (default: the shipped models).",
        ),
        click.option(
            "--device",
            type=click.Choice(["cpu", "cuda"]),
            default=None,
            help="Device for the neural-network stages (default: device).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


#: the options of :func:`cluster_options` that make a ClusterOptions (``--cluster`` is its spec)
CLUSTER_KEYS = ("cluster", "scheduler_file", "adapt", "profile_file", "insecure")
#: the commands' own options for how many workers (bench sweeps its --workers and --threads)
WORKER_COUNT_KEYS = ("workers", "threads_per_worker", "gpu_workers")


def cluster_from(options: dict[str, Any], *, worker_counts: bool = True) -> ClusterOptions:
    """The command's :class:`~trackflow.cluster.ClusterOptions`, built once from its cluster
    options, which are taken out of ``options`` (an option not given keeps the dataclass's
    default). ``worker_counts=False``: ``--workers`` stays in ``options`` (bench's sweep)."""
    from trackflow.cluster.options import ClusterOptions

    keys = CLUSTER_KEYS + (WORKER_COUNT_KEYS if worker_counts else ())
    given = {key: options.pop(key) for key in keys if key in options}
    given = {key: value for key, value in given.items() if value is not None}
    if "cluster" in given:
        given["spec"] = given.pop("cluster")
    return ClusterOptions(**given)


def more_clusters_option(command: F) -> F:
    """``--also-cluster`` of serve and stream. ``Service.open`` reads the setting
    ``service.more_clusters`` itself, so the command sets it for the call (:func:`more_clusters_set`)."""
    return click.option(
        "--also-cluster",
        "more_clusters",
        metavar="SPEC",
        multiple=True,
        default=setting("service.more_clusters"),
        show_default="service.more_clusters",
        help="Another cluster (scheduler address or profile) the service spans, beside --cluster; "
        "repeatable. Given, it replaces the setting.",
    )(command)


def more_clusters_set(options: dict[str, Any], cluster: ClusterOptions) -> AbstractContextManager[Any]:
    """The setting ``service.more_clusters`` as ``--also-cluster`` gives it (taken out of
    ``options``), as a context manager around the command's call."""
    from trackflow import config

    more = [str(spec) for spec in options.pop("more_clusters") or ()]
    if more and cluster.scheduler_file is not None:
        # open_cluster joins the scheduler file whatever the spec: every cluster would be that one
        raise click.BadParameter(
            f"{', '.join(more)}: another cluster beside --scheduler-file would join that same "
            "scheduler; give the clusters as scheduler addresses or profiles",
            param_hint="--also-cluster / service.more_clusters",
        )
    return config.set(**{"service.more_clusters": more})


@main.command()
@click.argument("input_dir", type=EXISTING_DIR)
@click.option(
    "--out",
    "out_dir",
    type=OUT_DIR,
    required=True,
    help="Output directory: submission.csv, report.json, per-batch Parquet and the plots (PNG).",
)
@cluster_options
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Workers (default: cores).")
@click.option("--threads-per-worker", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--gpu-workers",
    type=click.IntRange(min=0),
    default=None,
    help="GPU workers (slurm-mixed: GPU jobs beside the CPU jobs; local: workers flagged GPU=1).",
)
@click.option(
    "--mode",
    type=click.Choice(["fused", "staged", "direct"]),
    default=None,
    help="fused: one task per batch; staged: one task per stage; direct: no Dask. [default: workflow.mode]",
)
@click.option(
    "--dispatch",
    type=click.Choice(["actor", "task"]),
    default=None,
    help="Fused mode: actor = each batch one call to a worker's pipeline actor (~2 ms, no trip "
    "through the scheduler); task = a Dask task per batch. [default: workflow.dispatch]",
)
@click.option(
    "--batch-size",
    default=None,
    callback=lambda _c, _p, v: batch_size_option(v),
    help="Events per batch, or 'auto': sized from the events' hits so Dask's ~30 ms per batch "
    "stays ~1 % of it (workflow.auto_batch). [default: workflow.batch_size]",
)
@click.option(
    "--max-hits-per-batch",
    type=click.IntRange(min=1),
    default=None,
    help="Batch by hits instead of by event count.",
)
@click.option("--max-in-flight", type=click.IntRange(min=1), default=None, help="Batches in flight at once.")
@click.option(
    "--performance-report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write Dask's HTML performance report here.",
)
@click.option("--event-id", "event_ids", type=int, multiple=True, help="Only these events (repeatable).")
@click.option(
    "--retries", type=click.IntRange(min=0), default=None, help="Retries of transient task failures."
)
@click.option("--overwrite", is_flag=True, help="Start afresh instead of resuming finished batches in --out.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when a terminal).")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="A setting of trackflow.yaml for this run, e.g. pipeline.graph_building.radius=0.09 "
    "(repeatable; VALUE is read as YAML). Wins over the environment, config files and the models' "
    "manifest; report.json records every stage's settings and their sources.",
)
@user_errors
def reconstruct(event_ids: tuple[int, ...], assignments: tuple[str, ...], **options: Any) -> None:
    """Reconstruct tracks for the events in INPUT_DIR; write submission.csv and report.json.

    Exit code 0 when every event was done, 3 when some events failed (listed in report.json).
    """
    from trackflow import config
    from trackflow.run.reconstruct import ReconstructConfig
    from trackflow.run.reconstruct import reconstruct as run_reconstruct

    cluster = cluster_from(options)
    given = {k: v for k, v in options.items() if v is not None}
    given["cluster"] = cluster
    if event_ids:
        given["event_ids"] = list(event_ids)
    settings = config.parse_assignments(assignments)
    # pipeline settings travel to the workers resolved; the rest apply to this process (and
    # the local workers it starts) through dask.config
    given["settings"] = {k: v for k, v in settings.items() if k.startswith("pipeline.")}
    given["settings_source"] = "cli"
    with config.set(**{k: v for k, v in settings.items() if not k.startswith("pipeline.")}):
        report = run_reconstruct(ReconstructConfig(**given))
    for line in report.summary_lines():
        click.echo(line)
    sys.exit(report.exit_code)


@main.command()
@click.argument("input_dir", type=EXISTING_DIR)
@click.option("--out", "out_dir", type=OUT_DIR, required=True, help="Directory for bench.json and plots.")
@cluster_options
@click.option(
    "--workers",
    "workers",
    default=None,
    callback=lambda _c, _p, v: v and int_list(v),
    help="Worker counts (instances) to sweep, e.g. 1,2.",
)
@click.option(
    "--threads",
    "threads",
    default=None,
    callback=lambda _c, _p, v: v and int_list(v),
    help="Threads per worker to sweep, e.g. 1,2.",
)
@click.option(
    "--concurrency",
    "concurrency",
    default=None,
    callback=lambda _c, _p, v: v and int_list(v),
    help="Batches in flight to sweep, e.g. 1,2,4.",
)
@click.option("--modes", default=None, help="Modes to compare, e.g. fused,staged,direct.")
@click.option(
    "--batch-size",
    default=None,
    callback=lambda _c, _p, v: batch_size_option(v),
    help="Events per batch, or 'auto': sized from the events' hits and balanced over each "
    "point's worker slots, as reconstruct cuts them. [default: workflow.batch_size]",
)
@click.option("--repeats", type=click.IntRange(min=1), default=None)
@click.option("--max-events", type=click.IntRange(min=1), default=None, help="Use at most this many events.")
@click.option(
    "--hits",
    type=click.IntRange(min=0),
    default=None,
    help="Cut every event to this many random hits before the sweep (0: no cut; default: bench.hits).",
)
@click.option(
    "--min-point-s",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds of one-core work each point holds at least: the events are replayed until they make "
    "that much (0: each event once). [default: bench.min_point_s]",
)
@user_errors
def bench(**options: Any) -> None:
    """Sweep workers x threads x concurrency x mode on the same events; write bench.json and plots."""
    from trackflow import config
    from trackflow.bench.sweep import BenchConfig, run_bench

    cluster = cluster_from(options, worker_counts=False)
    given = {k: v for k, v in options.items() if v is not None}
    given["cluster"] = cluster
    if "modes" in given:
        given["modes"] = [m.strip() for m in given["modes"].split(",") if m.strip()]
    verbose = bool(config.get("bench.verbose"))
    result = run_bench(BenchConfig(**given), progress=click.echo if verbose else None)
    for key in ("scaling_efficiency", "fused_over_staged", "dask_overhead_fraction"):
        click.echo(f"{key}: {result.get(key)}")
    # the node's own scaling beside it: how much of the loss is Dask's
    detail = result.get("scaling_efficiency_detail") or {}
    for key in ("plain_scaling", "fused_over_plain"):
        if detail.get(key) is not None:
            click.echo(f"{key}: {detail[key]}")
    click.echo(f"wrote {Path(options['out_dir']) / 'bench.json'}")


@main.command()
@click.option(
    "--bench", "bench_json", type=EXISTING_FILE, required=True, help="bench.json from trackflow bench."
)
@click.option(
    "--rate",
    "rate_hz",
    type=click.FloatRange(min=0, min_open=True),
    required=True,
    help="Target event rate (Hz).",
)
@click.option(
    "--latency-budget",
    "latency_budget_s",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Latency budget per event (s).",
)
@click.option(
    "--node",
    "nodes",
    multiple=True,
    help="Node type NAME=SPEC, e.g. cpu=cores:128,mem:512GB or gpu=gpus:4,cores:64,mem:256GB.",
)
@click.option(
    "--event-hits",
    type=click.IntRange(min=1),
    default=None,
    help="Extrapolate to events of this many hits (e.g. 100000).",
)
@click.option(
    "--headroom",
    type=click.FloatRange(0, 1, max_open=True),
    default=None,
    help="Fraction of capacity kept free (e.g. 0.2).",
)
@click.option("--out", "out_dir", type=OUT_DIR, default=None, help="Write estimate.json and a plot here.")
@click.option(
    "--gpu-speedup",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Assumed GPU speed-up over one core when the bench has no GPU figures (shown as an assumption).",
)
@user_errors
def estimate(**options: Any) -> None:
    """Resources (nodes, cores/GPUs, memory, network) that a target event rate needs, from a bench."""
    from trackflow.estimation.sizing import estimate as run_estimate

    result = run_estimate(**{k: v for k, v in options.items() if v is not None})
    click.echo(result.table())


def rate_list(value: str | None) -> tuple[list[float], list[float]] | None:
    """``2,4`` -> rates in Hz; ``0.5x,0.8x`` -> fractions of the measured capacity; (rates, fractions)."""
    if value is None:
        return None
    rates, fractions = [], []
    try:
        for part in (v.strip() for v in value.split(",")):
            if part.endswith("x"):
                fractions.append(float(part[:-1]))
            elif part:
                rates.append(float(part))
    except ValueError as error:
        expected = "comma-separated rates (Hz) or fractions of capacity (0.5x)"
        raise click.BadParameter(f"expected {expected}, got {value!r}") from error
    return rates, fractions


@main.command()
@click.argument("input_dir", type=EXISTING_DIR)
@click.option(
    "--out",
    "out_dir",
    type=OUT_DIR,
    default=Path("stream"),
    show_default=True,
    help="Directory for stream.json and the plots (PNG).",
)
@click.option(
    "--rate",
    "rates",
    default=None,
    callback=lambda _c, _p, v: rate_list(v),
    help="Offered rates (Hz) of open-loop Poisson arrivals, e.g. 1,2,3; 0.5x is half "
    "the capacity measured first.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds of arrivals per rate (default: stream.duration).",
)
@click.option(
    "--concurrency",
    default=None,
    callback=lambda _c, _p, v: v and int_list(v),
    help="Also a closed-loop sweep: requests in flight, e.g. 1,2,4 (each for --duration s).",
)
@click.option(
    "--instances",
    default=None,
    callback=lambda _c, _p, v: v and int_list(v),
    help="Workers to run the --concurrency sweep at, e.g. 1,2 (the cluster is scaled).",
)
@click.option(
    "--bench",
    "bench_json",
    type=EXISTING_FILE,
    default=None,
    help="bench.json of `trackflow bench` on this cluster for the prediction "
    "(default: a quick service-time measurement of the stream itself).",
)
@cluster_options
@more_clusters_option
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Worker processes (local) or worker jobs (Slurm).",
)
@click.option("--threads-per-worker", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--max-batch",
    "max_batch_events",
    type=click.IntRange(min=1),
    default=None,
    help="Dynamic batching: events per task at most (default: service.max_batch_events).",
)
@click.option(
    "--max-delay",
    "max_delay_ms",
    type=click.FloatRange(min=0),
    default=None,
    help="Dynamic batching: ms the oldest event may wait for a batch to fill "
    "(default: service.max_delay_ms).",
)
@click.option(
    "--max-queued",
    type=click.IntRange(min=1),
    default=None,
    help="Events that may wait on the client (default: service.max_queued).",
)
@click.option(
    "--policy",
    "queue_policy",
    type=click.Choice(["shed", "block"]),
    default=None,
    help="When the queue is full: shed the event (counted) or block the source "
    "(default: service.queue_policy).",
)
@click.option(
    "--max-events", type=click.IntRange(min=1), default=None, help="Replay at most this many events."
)
@click.option("--seed", type=int, default=None, help="Seed of the arrival times (default: stream.seed).")
@click.option(
    "--passes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="The rates take turns this many times, --duration/PASSES s each (answers pooled): "
    "a drifting machine speed hits every rate alike.",
)
@user_errors
def stream(**options: Any) -> None:
    """Stream INPUT_DIR's events into a trackflow.Service as open-loop Poisson arrivals.

    Per --rate: latency from arrival to tracks (queueing, transfer, service), achieved
    throughput, backlog over time, shed and failed counts, against the prediction of the
    estimate's queue model for this cluster (from --bench, else measured here first). Writes
    stream.json, latency_vs_rate.png (the knee), backlog.png and, with --concurrency,
    concurrency.png.
    """
    from trackflow.service.stream import StreamConfig, run_stream

    cluster = cluster_from(options)
    more_clusters = more_clusters_set(options, cluster)
    given = {k: v for k, v in options.items() if v is not None}
    given["cluster"] = cluster
    if "rates" in given:
        given["rates"], given["capacity_fractions"] = given["rates"]
    with more_clusters:
        result = run_stream(StreamConfig(**given), progress=click.echo)
    knee = result["knee"]
    fmt = lambda v: "-" if v is None else f"{v:.3g} Hz"  # noqa: E731
    click.echo(
        f"capacity: measured {fmt(result['capacity']['measured_hz'])}, "
        f"predicted {fmt(result['capacity']['predicted_hz'])}"
    )
    click.echo(f"knee: measured {fmt(knee['measured_hz'])}, predicted {fmt(knee['predicted_hz'])}")
    counts = result["counts"]
    click.echo(
        f"events: {counts['done']} done, {counts['failed']} failed, {counts['shed']} shed of "
        f"{counts['submitted']}; every arrival answered: {result['every_arrival_answered']}"
    )
    for path in result["outputs"]:
        click.echo(f"wrote {path}")


@main.command()
@cluster_options
@more_clusters_option
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Worker processes (local) or worker jobs (Slurm).",
)
@click.option("--threads-per-worker", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--host", default=None, help="Address to listen on (default: serve.host; 127.0.0.1 is this machine only)."
)
@click.option(
    "--http-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    help="HTTP port (default: serve.http_port, Triton's; 0: any free port).",
)
@click.option(
    "--grpc-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    help="gRPC port (default: serve.grpc_port, Triton's; 0: any free port).",
)
@click.option("--grpc/--no-grpc", "grpc", default=None, help="Also serve gRPC (default: serve.grpc).")
@click.option(
    "--max-request-bytes",
    type=click.IntRange(min=1),
    default=None,
    help="Largest request body in bytes (default: serve.max_request_bytes).",
)
@click.option("--tls-cert", type=EXISTING_FILE, default=None, help="PEM certificate: serve HTTPS.")
@click.option("--tls-key", type=EXISTING_FILE, default=None, help="PEM private key of --tls-cert.")
@click.option(
    "--max-batch",
    "max_batch_events",
    type=click.IntRange(min=1),
    default=None,
    help="Dynamic batching: events per task at most (default: service.max_batch_events).",
)
@click.option(
    "--max-delay",
    "max_delay_ms",
    type=click.FloatRange(min=0),
    default=None,
    help="Dynamic batching: ms the oldest event may wait for a batch to fill "
    "(default: service.max_delay_ms).",
)
@click.option(
    "--max-queued",
    type=click.IntRange(min=1),
    default=None,
    help="Events that may wait for a worker (default: service.max_queued); then --policy.",
)
@click.option(
    "--policy",
    "queue_policy",
    type=click.Choice(["shed", "block"]),
    default=None,
    help="When the queue is full: answer 503 at once (shed) or hold the request (block).",
)
@click.option(
    "--mode",
    type=click.Choice(["fused", "staged"]),
    default="fused",
    show_default=True,
    help="fused: an event is one task through every stage; staged: a task per stage, chained "
    "by Dask (stages may run on different workers).",
)
@click.option(
    "--tasks-per-slot",
    type=click.IntRange(min=1),
    default=None,
    help="Task dispatch only: tasks on the cluster per worker thread (default: serve.tasks_per_slot; "
    "2: the next event waits on its worker, so Dask's round trip overlaps the running one; 1: none waits).",
)
@click.option(
    "--dispatch",
    type=click.Choice(["actor", "task"]),
    default=None,
    help="actor: each event straight to a worker's pipeline actor, no trip through the scheduler "
    "(default: service.dispatch); task: a Dask task through the scheduler.",
)
@user_errors
def serve(models_dir: Path | None, device: str | None, **options: Any) -> None:
    """Serve the pipeline over the KServe v2 / Triton inference protocol (HTTP).

    Model `trackflow`: inputs hit_id INT64, x, y, z FP32 (mm), volume_id, layer_id, module_id
    INT32 (INT64 accepted), all 1-D of one length; output track_id INT64 aligned with hit_id.
    Endpoints /v2/health/{live,ready}, /v2/models/trackflow[/ready|/config|/infer], and the same
    over gRPC (port 8001). Any Triton client can call it, e.g.
    tritonclient.http.InferenceServerClient("127.0.0.1:8000"). The
    events run on the Dask cluster behind it (--cluster). Stops on Ctrl-C or SIGTERM, after
    answering what it has taken.
    """
    import signal
    import threading

    from trackflow import config
    from trackflow.service import ServiceConfig
    from trackflow.service.kserve import ServeConfig, run_server

    cluster = cluster_from(options)
    more_clusters = more_clusters_set(options, cluster)
    serve_keys = ("host", "http_port", "grpc", "grpc_port", "max_request_bytes", "tls_cert", "tls_key")
    service_keys = ("max_batch_events", "max_delay_ms", "max_queued", "queue_policy", "dispatch")
    serve_config = ServeConfig(**{k: options.pop(k) for k in serve_keys if options.get(k) is not None})
    tasks_per_slot = options.pop("tasks_per_slot") or int(config.get("serve.tasks_per_slot"))
    service_config = ServiceConfig(
        models_dir=models_dir,
        device=device,
        threads_per_worker=cluster.threads_per_worker,
        tasks_per_slot=tasks_per_slot,
        mode=options.pop("mode"),
        **{k: options.pop(k) for k in service_keys if options.get(k) is not None},
    )
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())

    def ready(server: Any) -> None:
        clusters = [cluster.spec, *config.get("service.more_clusters")]  # as Service.open spans them
        grpc = f", gRPC {server.config.host}:{server.grpc_port}" if server.grpc_port else ""
        click.echo(
            f"serving model trackflow on {server.url}{grpc} ({cluster.workers} worker(s), "
            f"{service_config.mode}, cluster {', '.join(clusters)}); Ctrl-C stops",
            err=True,
        )

    with more_clusters:
        counts = run_server(
            cluster.spec,
            cluster.worker_count(),
            service_config,
            serve_config,
            stop,
            on_ready=ready,
            **cluster.open_kwargs(),
        )
    service = counts["service"]
    click.echo(
        f"requests: {counts['http']['requests']}, answered {counts['http']['answered']}, "
        f"errors {counts['http']['errors']}; events done {service['done']}, failed "
        f"{service['failed']}, shed {service['shed']}",
        err=True,
    )


@main.group()
def export() -> None:
    """Write the pipeline in another server's format."""


@export.command("triton")
@click.argument("out_dir", type=OUT_DIR)
@click.option(
    "--kind",
    type=click.Choice(["custom", "ensemble"]),
    default=None,
    help="custom: one Python model runs the whole pipeline; ensemble: one model per stage, "
    "chained by Triton's ensemble scheduler (default: serve.triton.kind).",
)
@click.option(
    "--instances",
    type=click.IntRange(min=1),
    default=None,
    help="Instances (processes) of each model (default: serve.triton.instances).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="torch / FAISS threads per instance (default: serve.triton.threads).",
)
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default=None,
    help="cpu: KIND_CPU instances; cuda: KIND_GPU, --instances on each GPU, the neural-network "
    "stages on it (default: serve.triton.device).",
)
@click.option(
    "--models",
    "models_dir",
    type=EXISTING_DIR,
    default=None,
    help="Model directory (default: the shipped models); its sha256s are checked.",
)
@click.option("--overwrite", is_flag=True, help="Replace OUT_DIR if it is not empty.")
@user_errors
def export_triton(**options: Any) -> None:
    """Write a Triton Inference Server model repository to OUT_DIR serving model `trackflow`
    (the tensors of `trackflow serve`), the model files copied in.

    Triton runs it with a Python that has trackflow[triton] installed (numpy<2; `make
    venv-triton` builds .venv/triton), e.g.
    `tritonserver --model-repository OUT_DIR`; `python -m trackflow.service.triton.server OUT_DIR`
    starts the binary bundled with nvidia-pytriton with the environment it needs.
    """
    from trackflow.service.triton import TritonExportConfig
    from trackflow.service.triton import export_triton as run_export

    config = TritonExportConfig(**{k: v for k, v in options.items() if v is not None})
    for path in run_export(config):
        click.echo(f"wrote {path}")


# --------------------------------------------------------------------------- models
def scale_map(value: str | None) -> dict[str, float]:
    """``r=1000,phi=3.14159,z=1000`` -> ``{"r": 1000.0, ...}``."""
    scale: dict[str, float] = {}
    for part in (value or "").split(","):
        if not part.strip():
            continue
        name, sep, number = part.partition("=")
        try:
            scale[name.strip()] = float(number)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=NUMBER,..., e.g. r=1000,z=1000; got {part!r}")
    return scale


@main.group()
def models() -> None:
    """Model directories: bring your own Exa.TrkX / ACTS TorchScript models."""


@models.command("import")
@click.argument("source_dir", type=EXISTING_DIR)
@click.option(
    "--features",
    required=True,
    help="The models' input features in order, comma-separated: r, phi, z, eta, cos_phi, sin_phi, "
    "volume (e.g. r,phi,z).",
)
@click.option(
    "--scale",
    default=None,
    callback=lambda _c, _p, v: scale_map(v),
    help="Divisor per feature, r and z in mm, phi in rad, e.g. r=1000,phi=3.14159,z=1000 "
    "(default: r=1000,phi=pi,z=1000).",
)
@click.option(
    "--out",
    "out_dir",
    type=OUT_DIR,
    default=None,
    help="Write the model directory here, files copied (default: SOURCE_DIR itself).",
)
@click.option(
    "--from-models",
    default=None,
    help="A trackflow model directory, or 'shipped', for what SOURCE_DIR lacks: its layer-map graph "
    "building when there is no embed.pt, and its embedding and filter when their features and scales "
    "are the same. Without a filter.pt (and none taken from here) every graph edge goes to the GNN.",
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="A stage setting the models were tuned with, written into the manifest (repeatable), e.g. "
    "pipeline.graph_building.radius=1.6 (needed with embed.pt), pipeline.gnn.cut=0.75, "
    "pipeline.labelling.cut=0.75.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing manifest.json.")
@user_errors
def import_models(
    source_dir: Path,
    features: str,
    scale: dict[str, float],
    out_dir: Path | None,
    from_models: str | None,
    assignments: tuple[str, ...],
    overwrite: bool,
) -> None:
    """Write a trackflow manifest (with sha256s) for SOURCE_DIR's TorchScript embed.pt, filter.pt
    and gnn.pt (ACTS / acorn signatures), so that `trackflow reconstruct --models` runs them.

    gnn.pt is required; each file is loaded and called once on random hits to check it takes
    --features and returns logits.
    """
    from trackflow import config
    from trackflow.pipeline.model_files import shipped_models_dir
    from trackflow.pipeline.model_import import ImportConfig
    from trackflow.pipeline.model_import import import_models as run_import

    donor = (
        None
        if from_models is None
        else (shipped_models_dir() if from_models == "shipped" else Path(from_models))
    )
    result = run_import(
        ImportConfig(
            source_dir=source_dir,
            features=tuple(f.strip() for f in features.split(",") if f.strip()),
            scale=scale,
            out_dir=out_dir,
            from_models=donor,
            settings=config.parse_assignments(assignments),
            overwrite=overwrite,
        )
    )
    for stage, origin in result.origins.items():
        click.echo(f"{stage}: {origin}")
    click.echo(f"wrote {result.manifest_path}")
    click.echo(f"run: trackflow reconstruct EVENTS_DIR --out OUT --models {result.manifest_path.parent}")


def _distill_options(stage: str, scored: str) -> Callable[[F], F]:
    """The options every ``trackflow models distill-*`` command takes: --data, --out, --models."""

    def decorate(command: F) -> F:
        for option in reversed(
            [
                click.option(
                    "--data",
                    "data_dirs",
                    type=EXISTING_DIR,
                    multiple=True,
                    required=True,
                    help=f"Events (hits only are read) whose {scored} the teacher scores (repeatable).",
                ),
                click.option(
                    "--out", "out_dir", type=OUT_DIR, required=True, help="The new model directory."
                ),
                click.option(
                    "--models",
                    "models_dir",
                    type=EXISTING_DIR,
                    default=None,
                    help=f"The model directory whose {stage} is the teacher (default: the shipped models).",
                ),
                click.option("--quiet", is_flag=True, help="No progress log (losses, epochs) on stderr."),
            ]
        ):
            command = option(command)
        return command

    return decorate


@models.command("distill-filter")
@_distill_options("filter", "graph-building pairs")
@click.option("--hidden", type=click.IntRange(min=1), default=None, help="Student width (default: 64).")
@click.option("--layers", type=click.IntRange(min=1), default=None, help="Hidden layers (default: 3).")
@click.option(
    "--activation",
    type=click.Choice(["tanh", "relu"]),
    default=None,
    help="Student's hidden activation (default: tanh, as the teacher).",
)
@click.option(
    "--layer-norm/--no-layer-norm",
    default=None,
    help="LayerNorm in the student's hidden blocks (default: on). A ReLU student without it is "
    "~2x cheaper per pair on a CPU.",
)
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Training steps (default: 4000).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Pairs a step (default: 16384).")
@click.option("--seed", type=int, default=None, help="Batches and initialisation (default: 0).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads (default: cores).")
@user_errors
def distill_filter(
    data_dirs: tuple[Path, ...],
    out_dir: Path,
    models_dir: Path | None,
    quiet: bool,
    hidden: int | None,
    layers: int | None,
    activation: str | None,
    layer_norm: bool | None,
    steps: int | None,
    batch_size: int | None,
    seed: int | None,
    threads: int | None,
) -> None:
    """Write a copy of a model directory whose filter is a narrower FilterNet trained to reproduce
    the directory's filter (its logits on every graph-building pair of --data): the filter is the
    largest cost per event, the student is cheaper per pair, and the GNN, which reads the filter's
    scores, runs on unchanged. Everything else (embedding, layer map, GNN, cuts) is copied.
    """
    from trackflow.pipeline.threads import set_threads
    from trackflow.pipeline.training.distill import DistillConfig, distill_models

    training_log(quiet)
    if threads is not None:
        set_threads(threads)
    given: dict[str, Any] = {
        "hidden": hidden,
        "n_layers": layers,
        "activation": activation,
        "layer_norm": layer_norm,
        "steps": steps,
        "batch_size": batch_size,
        "seed": seed,
    }
    config = DistillConfig(**{k: v for k, v in given.items() if v is not None})
    written = distill_models(models_dir, list(data_dirs), out_dir, config)
    click.echo(f"wrote {written / 'manifest.json'}")
    click.echo(f"run: trackflow reconstruct EVENTS_DIR --out OUT --models {written}")


@models.command("distill-gnn")
@_distill_options("GNN", "filtered graphs")
@click.option("--hidden", type=click.IntRange(min=1), default=None, help="Student width (default: 32).")
@click.option(
    "--iterations", type=click.IntRange(min=1), default=None, help="Message-passing steps (default: 6)."
)
@click.option(
    "--activation",
    type=click.Choice(["tanh", "relu"]),
    default=None,
    help="Hidden activation of the student's MLPs (default: relu; states stay tanh).",
)
@click.option(
    "--layer-norm/--no-layer-norm", default=None, help="LayerNorm in the student's MLPs (default: off)."
)
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Training steps (default: 3000).")
@click.option(
    "--max-edges",
    type=click.IntRange(min=1),
    default=None,
    help="Edges of a step's phi sector (default: 40000).",
)
@click.option(
    "--student-from",
    type=EXISTING_DIR,
    default=None,
    help="A model directory whose distilled GNN (same shape) the student goes on from.",
)
@click.option("--seed", type=int, default=None, help="Sectors and initialisation (default: 0).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads (default: cores).")
@user_errors
def distill_gnn(
    data_dirs: tuple[Path, ...],
    out_dir: Path,
    models_dir: Path | None,
    quiet: bool,
    hidden: int | None,
    iterations: int | None,
    activation: str | None,
    layer_norm: bool | None,
    steps: int | None,
    max_edges: int | None,
    student_from: Path | None,
    seed: int | None,
    threads: int | None,
) -> None:
    """Write a copy of a model directory whose GNN is a cheaper interaction network (by default
    6 iterations, ReLU, no LayerNorm: ~2x faster on a CPU) trained to reproduce the directory's
    GNN (its logits on the filtered graphs of --data). Everything else, cuts included, is copied;
    set the operating point again with benchmarks/operating_point.py. A killed run resumes from
    its checkpoint in --out.
    """
    from trackflow.pipeline.threads import set_threads
    from trackflow.pipeline.training.distill import GNNDistillConfig, distill_gnn_models

    training_log(quiet)
    if threads is not None:
        set_threads(threads)
    given: dict[str, Any] = {
        "hidden": hidden,
        "n_iterations": iterations,
        "activation": activation,
        "layer_norm": layer_norm,
        "steps": steps,
        "max_edges_per_step": max_edges,
        "seed": seed,
    }
    config = GNNDistillConfig(**{k: v for k, v in given.items() if v is not None})
    written = distill_gnn_models(models_dir, list(data_dirs), out_dir, config, student_from)
    click.echo(f"wrote {written / 'manifest.json'}")
    click.echo(f"run: trackflow reconstruct EVENTS_DIR --out OUT --models {written}")
