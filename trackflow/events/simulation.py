"""Simulation of one event with truth: ACTS Fatras in the Generic Detector (= the TrackML detector).

:func:`simulate_event` runs pyacts in-process for one event and returns a TrackML :class:`Event`
(hits, truth, particles, and cells with geometric digitization):

1. particles: a particle gun (``pileup`` Gaussian-spread vertices with ``particles_per_vertex``
   pions each) or a real TrackML particles file (``particles_from``) read by ACTS's
   ``CsvParticleReader``;
2. Fatras propagates them in a 2 T field with multiple scattering and energy loss, making one
   simulated hit per crossing of a sensitive module;
3. digitization turns hits into measurements (:mod:`trackflow.events.digitization`);
4. ACTS writes CSV into a temporary directory, converted here into TrackML frames: module ids
   renumbered to ``detectors.csv``'s (the endcap numbering differs), noise hits added
   (:mod:`trackflow.events.noise`), TrackML weights computed (:func:`trackml_weights`), hit ids
   shuffled.

Everything random is seeded from ``(seed, event_index)``, so an event is the same whether it is
simulated alone, in a series or on another process.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv

from trackflow import config as settings
from trackflow.errors import ConfigError, EventFileError
from trackflow.events.acts_setup import B_FIELD_T, ActsDetector, acts_detector
from trackflow.events.detector import resolve_detectors
from trackflow.events.digitization import DIGITIZATIONS
from trackflow.events.event import Event, with_derived
from trackflow.events.noise import noise_count, noise_hits
from trackflow.events.particle_sources import move_vertices, trackml_to_acts_particles, vertex_index
from trackflow.events.truth_weights import trackml_weights

# acts_detector, B_FIELD_T, trackml_to_acts_particles and trackml_weights live in their own
# modules now; they stay
# importable from here, where the CKF baseline, tests and benchmarks import them
__all__ = [
    "B_FIELD_T",
    "SimulationConfig",
    "acts_detector",
    "encode_barcode",
    "simulate_event",
    "trackml_to_acts_particles",
    "trackml_weights",
    "vertex_index",
]

#: bit layout (name, shift, bits) of particle_id, packing ACTS's barcode (primary vertex, secondary
#: vertex, particle, generation, sub-particle) into 63 bits so ids are positive int64; real TrackML
#: particle files have a few thousand vertices, hence 16 bits for the primary vertex
BARCODE_FIELDS = (("pv", 47, 16), ("sv", 35, 12), ("part", 19, 16), ("gen", 11, 8), ("subpart", 0, 11))
ACTS_ID_COLUMNS = tuple(f"particle_id_{name}" for name, _, _ in BARCODE_FIELDS)
# independent random streams per event, all derived from (seed, event_index)
_STREAM_ACTS, _STREAM_NOISE, _STREAM_SHUFFLE, _STREAM_ROTATION, _STREAM_VERTICES = range(5)


def _setting(key: str) -> Callable[[], Any]:
    """A dataclass default: the setting ``simulation.<key>`` when the config is made."""
    return settings.default(f"simulation.{key}")


@dataclass
class SimulationConfig:
    """What to simulate. Defaults come from the ``simulation.*`` settings (trackflow.config).

    ``pileup``: number of vertices per event (particle gun); ``particles_per_vertex``: charged pions
    per vertex; ``pt_min``/``pt_max`` (GeV): uniform transverse momentum range; ``eta_max``:
    uniform in |eta| < eta_max; ``sigma_z``/``sigma_xy`` (mm): Gaussian vertex spread.
    ``particles_from``: a directory of TrackML ``eventNNNNNNNNN-particles.csv[.gz]`` files (or
    one file, or a glob pattern) whose particles are propagated instead of the gun, file
    ``event_index mod n`` of the sorted list;
    ``rotate_phi`` turns each such event by a random azimuth so repeated files differ.
    ``digitization``: ``"smeared"`` or ``"geometric"`` (makes cells). ``noise_fraction``: noise
    hits / all hits. ``p_min`` (GeV): Fatras drops particles below this momentum.

    Beam conditions, both modes: ``beam_sigma_z`` / ``beam_sigma_xy`` (mm) give the beam spot, every
    primary vertex drawn from N(0, sigma) (the gun: they replace ``sigma_z`` / ``sigma_xy``; real
    kinematics: None keeps the file's vertices, ≈ 5 mm in z in the Kaggle events, see
    :func:`~trackflow.events.particle_sources.move_vertices`); ``vertex_shift`` (mm, x, y, z) moves
    every vertex by the same offset; ``beam_flat_z`` (mm, real kinematics): every vertex's z uniform
    in ±beam_flat_z instead (what training wants: no z prior that a narrower or wider beam spot
    could contradict); ``vertex_fraction`` keeps that fraction of the vertices at random, a lower
    pileup (the gun keeps ``round(pileup * vertex_fraction)`` vertices). ``detectors``:
    detectors.csv(.gz) (default: setting ``data.detectors``, else the shared data's, else one
    derived from ACTS's Generic Detector: see :func:`trackflow.events.detector.resolve_detectors`).
    """

    seed: int = field(default_factory=_setting("seed"))
    pileup: int = field(default_factory=_setting("pileup"))
    particles_per_vertex: int = field(default_factory=_setting("particles_per_vertex"))
    pt_min: float = field(default_factory=_setting("pt_min"))
    pt_max: float = field(default_factory=_setting("pt_max"))
    eta_max: float = field(default_factory=_setting("eta_max"))
    sigma_z: float = field(default_factory=_setting("sigma_z"))
    sigma_xy: float = field(default_factory=_setting("sigma_xy"))
    particles_from: Path | None = field(default_factory=_setting("particles_from"))
    rotate_phi: bool = field(default_factory=_setting("rotate_phi"))
    digitization: str = field(default_factory=_setting("digitization"))
    noise_fraction: float = field(default_factory=_setting("noise_fraction"))
    p_min: float = field(default_factory=_setting("p_min"))
    beam_sigma_z: float | None = field(default_factory=_setting("beam_sigma_z"))
    beam_sigma_xy: float | None = field(default_factory=_setting("beam_sigma_xy"))
    beam_flat_z: float | None = field(default_factory=_setting("beam_flat_z"))
    vertex_shift: tuple[float, float, float] = field(default_factory=_setting("vertex_shift"))
    vertex_fraction: float = field(default_factory=_setting("vertex_fraction"))
    detectors: Path | None = None

    def __post_init__(self) -> None:
        if self.particles_from is not None:
            self.particles_from = Path(self.particles_from).expanduser()
        if self.detectors is not None:
            self.detectors = Path(self.detectors).expanduser()
        problems = []
        if self.digitization not in DIGITIZATIONS:
            problems.append(
                f"digitization: must be one of {', '.join(DIGITIZATIONS)}, got {self.digitization!r}"
            )
        if not 0.0 <= self.noise_fraction < 1.0:
            problems.append(f"noise_fraction: must be in [0, 1), got {self.noise_fraction}")
        if not 0.0 < self.vertex_fraction <= 1.0:
            problems.append(f"vertex_fraction: must be in (0, 1], got {self.vertex_fraction}")
        if self.beam_flat_z is not None and self.beam_sigma_z is not None:
            problems.append("beam_flat_z and beam_sigma_z: give one shape of the beam spot in z, not both")
        if self.beam_flat_z is not None and self.particles_from is None:
            problems.append("beam_flat_z: only for real kinematics (particles_from), the gun is Gaussian")
        for name in ("beam_sigma_z", "beam_sigma_xy", "beam_flat_z"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0.0):
                problems.append(f"{name}: must be a finite width >= 0 mm, got {value}")
        self.vertex_shift = tuple(float(v) for v in self.vertex_shift)  # type: ignore[assignment]
        if len(self.vertex_shift) != 3 or not all(math.isfinite(v) for v in self.vertex_shift):
            problems.append(f"vertex_shift: must be three finite numbers (mm), got {self.vertex_shift}")
        if self.particles_from is None:
            if self.pileup < 1 or self.particles_per_vertex < 1:
                problems.append("pileup and particles_per_vertex: must be >= 1")
            if not 0.0 < self.pt_min < self.pt_max:
                problems.append(f"pt range: need 0 < pt_min < pt_max (GeV), got {self.pt_min}..{self.pt_max}")
            if self.eta_max <= 0.0:
                problems.append(f"eta_max: must be > 0, got {self.eta_max}")
            if self.pileup >= 2**16:
                problems.append(f"pileup: at most {2**16 - 1} vertices, got {self.pileup}")
        if self.seed < 0:
            problems.append(f"seed: must be >= 0, got {self.seed}")
        if problems:
            raise ConfigError("; ".join(problems))

    def particle_files(self) -> list[Path]:
        """The TrackML particles files that ``particles_from`` names, sorted (empty without it).

        ``particles_from`` is a directory (its ``event*-particles.csv[.gz]``), one file, or a glob
        pattern of files (e.g. ``dir/event0000010[01]?-particles.csv.gz``, to hold files out).
        """
        if self.particles_from is None:
            return []
        source = self.particles_from
        if source.is_file():
            return [source]
        if source.is_dir():
            files = sorted(source.glob("event*-particles.csv*"))
        else:
            files = sorted(p for p in source.parent.glob(source.name) if p.is_file())
        if not files:
            raise ConfigError(f"particles_from {source}: no eventNNNNNNNNN-particles.csv[.gz] files there")
        return files


def event_rng(seed: int, event_index: int, stream: int) -> np.random.Generator:
    """The random generator of one stream of one event (independent of any other event)."""
    return np.random.default_rng([seed, event_index, stream])


def acts_seed(seed: int, event_index: int) -> int:
    """The seed ACTS's RandomNumbers gets for one event (ACTS runs each event as its event 0)."""
    return int(event_rng(seed, event_index, _STREAM_ACTS).integers(1, 2**31 - 1))


def encode_barcode(frame: pd.DataFrame) -> np.ndarray:
    """particle_id (int64) from ACTS's five barcode columns ``particle_id_pv`` .. ``_subpart``."""
    encoded = np.zeros(len(frame), np.int64)
    for (name, shift, bits), column in zip(BARCODE_FIELDS, ACTS_ID_COLUMNS, strict=True):
        values = frame[column].to_numpy(np.int64)
        if len(values) and (values.min() < 0 or values.max() >= 2**bits):
            raise ValueError(f"barcode field {name} out of range 0..{2**bits - 1}")
        encoded |= values << shift
    return encoded


# ---------------------------------------------------------------------------------------------
# one event
def _read_acts_csv(path: Path) -> pd.DataFrame:
    frame: pd.DataFrame = pacsv.read_csv(path).to_pandas()
    return frame


def _run_acts(config: SimulationConfig, event_index: int, setup: ActsDetector, workdir: Path) -> None:
    """Run the ACTS sequence for one event; ACTS writes its CSV files into ``workdir``."""
    import acts
    import acts.examples
    from acts.examples.simulation import (
        EtaConfig,
        MomentumConfig,
        ParticleConfig,
        PhiConfig,
        addParticleGun,
    )

    quiet = acts.logging.WARNING
    units = acts.UnitConstants
    sequencer = acts.examples.Sequencer(
        events=1, numThreads=1, outputDir=str(workdir), logLevel=quiet, trackFpes=False
    )
    random_numbers = acts.examples.RandomNumbers(seed=acts_seed(config.seed, event_index))
    files = config.particle_files()
    if files:
        source = files[event_index % len(files)]
        rotation = (
            float(event_rng(config.seed, event_index, _STREAM_ROTATION).uniform(0.0, 2.0 * math.pi))
            if config.rotate_phi
            else 0.0
        )
        try:
            particles = pd.read_csv(source)
        except (OSError, ValueError) as error:
            raise EventFileError(source, f"cannot read particles ({error})") from error
        missing = {"vx", "vy", "vz", "px", "py", "pz", "q"} - set(particles.columns)
        if missing:
            raise EventFileError(source, f"missing column(s) {', '.join(sorted(missing))}")
        particles = move_vertices(
            particles,
            event_rng(config.seed, event_index, _STREAM_VERTICES),
            sigma_z=config.beam_sigma_z,
            sigma_xy=config.beam_sigma_xy,
            flat_z=config.beam_flat_z,
            shift=config.vertex_shift,
            fraction=config.vertex_fraction,
        )
        inputs = workdir / "input"
        inputs.mkdir()
        # ACTS's reader wants its exact header and '\n' line ends; ACTS runs the event as event 0
        trackml_to_acts_particles(particles, rotation).to_csv(
            inputs / "event000000000-particles.csv", index=False, lineterminator="\n"
        )
        sequencer.addReader(
            acts.examples.CsvParticleReader(
                level=quiet, inputDir=str(inputs), inputStem="particles", outputParticles="particles_input"
            )
        )
        input_particles = "particles_input"
    else:
        sigma_z = config.sigma_z if config.beam_sigma_z is None else config.beam_sigma_z
        sigma_xy = config.sigma_xy if config.beam_sigma_xy is None else config.beam_sigma_xy
        addParticleGun(
            sequencer,
            MomentumConfig(config.pt_min * units.GeV, config.pt_max * units.GeV, transverse=True),
            EtaConfig(-config.eta_max, config.eta_max, uniform=True),
            PhiConfig(0.0, 360.0 * units.degree),
            ParticleConfig(config.particles_per_vertex, acts.PdgParticle.ePionPlus, randomizeCharge=True),
            multiplicity=max(1, round(config.pileup * config.vertex_fraction)),
            vtxGen=acts.examples.GaussianVertexGenerator(
                mean=acts.Vector4(*(v * units.mm for v in config.vertex_shift), 0),
                stddev=acts.Vector4(sigma_xy * units.mm, sigma_xy * units.mm, sigma_z * units.mm, 0),
            ),
            rnd=random_numbers,
            logLevel=quiet,
        )
        input_particles = "particles_generated_selected"
    sequencer.addAlgorithm(
        acts.examples.FatrasSimulation(
            level=quiet,
            inputParticles=input_particles,
            outputParticles="particles_simulated",
            outputSimHits="simhits",
            randomNumbers=random_numbers,
            trackingGeometry=setup.tracking_geometry,
            magneticField=setup.field,
            generateHitsOnSensitive=True,
            emScattering=True,
            emEnergyLossIonisation=True,
            emEnergyLossRadiation=True,
            emPhotonConversion=True,
            pMin=config.p_min * units.GeV,
        )
    )
    # the prepared config already holds the 19k-surface map (slow to convert); one event at a
    # time per process, so setting its random numbers here is safe
    digi = setup.digi_configs[config.digitization]
    digi.randomNumbers = random_numbers
    # ERROR: at WARNING it prints a line per event counting the simulated hits it skipped
    # (about 1 in 100k in a full event), which would break up the progress bar
    sequencer.addAlgorithm(acts.examples.DigitizationAlgorithm(digi, acts.logging.ERROR))
    out = str(workdir)
    sequencer.addWriter(
        acts.examples.CsvParticleWriter(
            level=quiet, inputParticles="particles_simulated", outputDir=out, outputStem="particles_simulated"
        )
    )
    sequencer.addWriter(
        acts.examples.CsvSimHitWriter(
            level=quiet, inputSimHits="simhits", outputDir=out, outputStem="simhits"
        )
    )
    sequencer.addWriter(
        acts.examples.CsvMeasurementWriter(
            level=quiet,
            inputMeasurements="measurements",
            inputClusters="clusters",
            inputMeasurementSimHitsMap="measurement_simhits_map",
            outputDir=out,
        )
    )
    sequencer.run()


def _convert(
    config: SimulationConfig, event_index: int, event_id: int, setup: ActsDetector, workdir: Path
) -> Event:
    """ACTS CSV output of one event -> TrackML Event with noise, weights and shuffled hit ids."""
    prefix = workdir / "event000000000-"
    simhits = _read_acts_csv(Path(f"{prefix}simhits.csv"))
    measurements = _read_acts_csv(Path(f"{prefix}measurements.csv"))
    links = _read_acts_csv(Path(f"{prefix}measurement-simhit-map.csv"))
    acts_particles = _read_acts_csv(Path(f"{prefix}particles_simulated.csv"))

    # a merged cluster can come from several simulated hits: its truth is the first one
    first_simhit = links.groupby("measurement_id", sort=True)["hit_id"].min()
    measurements = measurements.sort_values("measurement_id", ignore_index=True)
    simhit_rows = first_simhit.reindex(measurements["measurement_id"]).to_numpy()
    matched = simhits.iloc[simhit_rows].reset_index(drop=True)
    keys = setup.module_keys(measurements["geometry_id"].to_numpy())
    signal = pd.DataFrame(
        {
            "x": measurements["global_x"].to_numpy(np.float64),
            "y": measurements["global_y"].to_numpy(np.float64),
            "z": measurements["global_z"].to_numpy(np.float64),
            "volume_id": keys[:, 0],
            "layer_id": keys[:, 1],
            "module_id": keys[:, 2],
            "particle_id": encode_barcode(matched),
            "tx": matched["tx"].to_numpy(np.float64),
            "ty": matched["ty"].to_numpy(np.float64),
            "tz": matched["tz"].to_numpy(np.float64),
            "tpx": matched["tpx"].to_numpy(np.float64),
            "tpy": matched["tpy"].to_numpy(np.float64),
            "tpz": matched["tpz"].to_numpy(np.float64),
        }
    )
    noise = noise_hits(
        setup.frames,
        noise_count(len(signal), config.noise_fraction),
        event_rng(config.seed, event_index, _STREAM_NOISE),
    )
    noise_truth = noise.assign(
        particle_id=np.int64(0), tx=noise["x"], ty=noise["y"], tz=noise["z"], tpx=0.0, tpy=0.0, tpz=0.0
    )
    combined = pd.concat([signal, noise_truth[list(signal.columns)]], ignore_index=True)

    # hit ids 1..N in random order, so the order tells nothing about particles or noise
    permutation = event_rng(config.seed, event_index, _STREAM_SHUFFLE).permutation(len(combined))
    combined = combined.iloc[permutation].reset_index(drop=True)
    combined.insert(0, "hit_id", np.arange(1, len(combined) + 1, dtype=np.int64))

    particles = pd.DataFrame(
        {
            "particle_id": encode_barcode(acts_particles),
            "vx": acts_particles["vx"],
            "vy": acts_particles["vy"],
            "vz": acts_particles["vz"],
            "px": acts_particles["px"],
            "py": acts_particles["py"],
            "pz": acts_particles["pz"],
            "q": np.rint(acts_particles["q"]).astype(np.int32),
        }
    )
    nhits = combined.loc[combined["particle_id"] != 0, "particle_id"].value_counts()
    particles["nhits"] = nhits.reindex(particles["particle_id"]).fillna(0).to_numpy(np.int32)
    particles["particle_type"] = acts_particles["particle_type"].to_numpy(np.int64)

    truth = combined[["hit_id", "particle_id", "tx", "ty", "tz", "tpx", "tpy", "tpz"]].copy()
    truth["weight"] = trackml_weights(truth, particles)
    hits = combined[["hit_id", "x", "y", "z", "volume_id", "layer_id", "module_id"]].astype(
        {
            "x": np.float32,
            "y": np.float32,
            "z": np.float32,
            "volume_id": np.int32,
            "layer_id": np.int32,
            "module_id": np.int32,
        }
    )
    cells = None
    if config.digitization == "geometric":
        cells = _cells(workdir, measurements, permutation, noise, len(signal))
    return Event(event_id=event_id, hits=with_derived(hits), cells=cells, truth=truth, particles=particles)


def _cells(
    workdir: Path, measurements: pd.DataFrame, permutation: np.ndarray, noise: pd.DataFrame, n_signal: int
) -> pd.DataFrame:
    """TrackML cells (hit_id, ch0, ch1, value) of the measurements and of the noise hits."""
    acts_cells = _read_acts_csv(workdir / "event000000000-cells.csv")
    hit_id_of_row = np.empty(len(permutation), np.int64)
    hit_id_of_row[permutation] = np.arange(1, len(permutation) + 1)
    # measurement row -> hit id; measurements are sorted by measurement_id above
    row_of_measurement = pd.Series(
        np.arange(len(measurements)), index=measurements["measurement_id"].to_numpy()
    )
    signal_rows = row_of_measurement.reindex(acts_cells["measurement_id"].to_numpy()).to_numpy()
    signal_cells = pd.DataFrame(
        {
            "hit_id": hit_id_of_row[signal_rows],
            "ch0": acts_cells["channel0"].to_numpy(np.int32),
            "ch1": acts_cells["channel1"].to_numpy(np.int32),
            "value": acts_cells["value"].to_numpy(np.float64),
        }
    )
    noise_cells = pd.DataFrame(
        {
            "hit_id": hit_id_of_row[n_signal + np.arange(len(noise))],
            "ch0": noise["ch0"].to_numpy(np.int32),
            "ch1": noise["ch1"].to_numpy(np.int32),
            # a plausible single-cell deposit, on the scale of the signal cells' values
            "value": np.full(
                len(noise), float(np.median(signal_cells["value"])) if len(signal_cells) else 1.0
            ),
        }
    )
    cells = pd.concat([signal_cells, noise_cells], ignore_index=True)
    return cells.sort_values(["hit_id", "ch0", "ch1"], kind="stable", ignore_index=True)


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="trackflow-sim-") as tmp:
        yield Path(tmp)


def simulate_event(config: SimulationConfig, event_index: int, event_id: int | None = None) -> Event:
    """Simulate one event in this process and return it as a TrackML Event with truth.

    Deterministic for ``(config, event_index)``; ``event_id`` defaults to ``event_index``.
    Needs pyacts (``pip install trackflow[sim]``); the detector description is
    :func:`~trackflow.events.detector.resolve_detectors`'s.
    """
    try:
        import acts.examples  # noqa: F401
    except ImportError as error:  # an environment problem the user can fix
        raise ConfigError("simulation needs pyacts: pip install 'trackflow[sim]'") from error
    setup = acts_detector(str(resolve_detectors(config.detectors)))
    with _workdir() as workdir:
        _run_acts(config, event_index, setup, workdir)
        return _convert(config, event_index, event_index if event_id is None else event_id, setup, workdir)
