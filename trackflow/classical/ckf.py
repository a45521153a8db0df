"""Classical tracking with ACTS: triplet seeding, the combinatorial Kalman filter (CKF) and greedy
ambiguity resolution, on the same TrackML events that trackflow reconstructs.

It is the baseline that a physicist would run instead of the GNN pipeline (issue 20). Everything
runs in one ``acts.examples.Sequencer`` with one thread, one sequencer per event:

1. **hits -> measurements** (:func:`~trackflow.classical.measurements.hit_measurements`, before
   the sequencer): one 2-D measurement per hit, noise included, on its ACTS module.
2. **ACTS** (``SpacePointMaker`` on every pixel layer, ``GridTripletSeedingAlgorithm``,
   ``TrackParamsEstimationAlgorithm``, ``TrackFindingAlgorithm``,
   ``GreedyAmbiguityResolutionAlgorithm``), settings :class:`ClassicalTrackingConfig`
   (``../shared/REFERENCE.md`` §9 says which of them matter).
3. **tracks -> hits** (:func:`~trackflow.classical.measurements.assign_hits`): each resolved
   track's measurement states give its measurement indices, hence its hits. The ambiguity
   resolution leaves tracks that share up to ``maximum_shared_hits`` hits; a shared hit goes to
   the track with the most measurements (then the lower chi², then the lower track index); a hit
   on no track becomes a track of its own, so the submission holds every hit exactly once.

Times (s, one thread, :class:`ClassicalTracks`): ``timings`` per step from the sequencer's
``timing.csv``; ``seconds`` sums the five ACTS algorithms (what C++ users would pay: the
measurement conversion and the track read-out are Python glue of this package, timed apart as
``timings["measurements"]`` and ``timings["collect"]``); ``wall_seconds`` is the whole
:func:`reconstruct_event` call.

Needs pyacts (``pip install 'trackflow[sim]'``); nothing here imports it before it is needed.
"""

from __future__ import annotations

import functools
import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trackflow.classical.measurements import Measurements, assign_hits, hit_measurements, module_map
from trackflow.errors import ConfigError
from trackflow.events.event import Event
from trackflow.events.submission import tracks_frame

__all__ = [
    "ACTS_STEPS",
    "GLUE_STEPS",
    "SEEDING_LAYERS",
    "ClassicalTrackingConfig",
    "ClassicalTracks",
    "prepare",
    "reconstruct_event",
]

log = logging.getLogger(__name__)

#: pixel layers that make space points: barrel (volume 8) and both endcaps (7, 9), every layer
#: (ACTS's own example uses only the four innermost disks, which leaves |eta| > 3 without seeds)
SEEDING_LAYERS: dict[int, tuple[int, ...]] = {
    7: tuple(range(2, 16, 2)),
    8: (2, 4, 6, 8),
    9: tuple(range(2, 16, 2)),
}
#: sequencer timing.csv identifier -> step name of :attr:`ClassicalTracks.timings`
ACTS_STEPS: dict[str, str] = {
    "Algorithm:SpacePointMaker": "space_points",
    "Algorithm:GridTripletSeedingAlgorithm": "seeding",
    "Algorithm:TrackParamsEstimationAlgorithm": "parameters",
    "Algorithm:TrackFindingAlgorithm": "ckf",
    "Algorithm:GreedyAmbiguityResolutionAlgorithm": "ambiguity",
}
GLUE_STEPS: dict[str, str] = {
    "Reader:TrackMLMeasurements": "measurements",
    "Algorithm:MeasurementSubset": "measurements",
    "Algorithm:TrackHits": "collect",
}


@dataclass(frozen=True)
class ClassicalTrackingConfig:
    """Settings of seeding, CKF and ambiguity resolution. Lengths in mm, momenta in GeV.

    Seeding (triplets of pixel space points): ``min_pt`` (GeV) lowest seed pT; ``r_max`` (mm)
    space points up to this radius; ``delta_r_min``, ``delta_r_max_bottom``, ``delta_r_max_top``
    (mm) radial gaps middle-bottom and middle-top (top up to 120 mm: with 60 mm,
    2 < |eta| < 2.5 got no seed); ``r_middle`` (mm) radii of middle space points (from 20 mm for
    the forward disks); ``cot_theta_max`` (sinh of the largest |eta|); ``collision_region`` (mm)
    half length in z of the luminous region a seed may point to; ``z_max`` (mm) |z| of the space
    points; ``impact_max`` (mm) largest transverse impact parameter (3 mm lets fakes outrank real
    seeds at high density); ``max_seeds_per_middle``; ``sigma_scattering``, ``rad_length_per_seed``
    (multiple-scattering allowance).

    CKF: ``chi2_measurement``, ``chi2_outlier`` (χ² cuts of a measurement and an outlier);
    ``branches_per_surface`` (measurements kept per surface, i.e. branching); tracks kept with
    ``|d0| <= loc0_max`` (mm), ``|eta| <= abs_eta_max``, ``>= min_measurements`` measurements,
    ``<= max_holes`` holes and ``<= max_outliers`` outliers.

    Ambiguity resolution (greedy): ``maximum_shared_hits`` per track, ``min_measurements`` after.
    ``detectors``: the detectors.csv the events were simulated with (default: as
    :func:`~trackflow.events.detector.resolve_detectors`).
    """

    min_pt: float = 0.5
    r_max: float = 200.0
    delta_r_min: float = 1.0
    delta_r_max_bottom: float = 60.0
    delta_r_max_top: float = 120.0
    r_middle: tuple[float, float] = (20.0, 200.0)
    cot_theta_max: float = math.sinh(4.0)
    collision_region: float = 250.0
    z_max: float = 2000.0
    impact_max: float = 1.0
    max_seeds_per_middle: int = 5
    sigma_scattering: float = 5.0
    rad_length_per_seed: float = 0.1
    chi2_measurement: float = 15.0
    chi2_outlier: float = 25.0
    branches_per_surface: int = 2
    loc0_max: float = 4.0
    abs_eta_max: float = 4.0
    min_measurements: int = 7
    max_holes: int = 2
    max_outliers: int = 2
    maximum_shared_hits: int = 3
    detectors: Path | None = None

    def __post_init__(self) -> None:
        problems = [
            f"{name}: must be > 0, got {getattr(self, name)}"
            for name in (
                "min_pt",
                "r_max",
                "delta_r_max_bottom",
                "delta_r_max_top",
                "cot_theta_max",
                "collision_region",
                "z_max",
                "impact_max",
                "chi2_measurement",
                "loc0_max",
            )
            if not getattr(self, name) > 0
        ]
        if self.r_middle[0] >= self.r_middle[1]:
            problems.append(f"r_middle: need low < high (mm), got {self.r_middle}")
        for name in ("max_seeds_per_middle", "branches_per_surface", "min_measurements"):
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be >= 1, got {getattr(self, name)}")
        if problems:
            raise ConfigError("; ".join(problems))


@dataclass
class ClassicalTracks:
    """The tracks of one event, as :class:`trackflow.pipeline.EventTracks` has them.

    ``track_labels`` int64 [N]: one label per hit (row order of ``hit_ids``); a hit on no track is
    a track of its own. ``timings``: s per step (measurements, space_points, seeding, parameters,
    ckf, ambiguity, collect); ``seconds``: the five ACTS algorithms (s, one thread);
    ``wall_seconds``: the whole call; ``counts``: hits, ckf_tracks (after the CKF's selection),
    tracks (after ambiguity resolution), shared_hits (hits claimed by more than one track).
    """

    event_id: int
    hit_ids: np.ndarray
    track_labels: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    wall_seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """Submission frame: event_id, hit_id, track_id (int64), one row per hit."""
        return tracks_frame(self.event_id, self.hit_ids, self.track_labels)


def prepare(config: ClassicalTrackingConfig | None = None) -> None:
    """Build the ACTS geometry and the module map now (about 2 s, once per process), so that the
    first :func:`reconstruct_event` of a timed run pays only for its event."""
    module_map((config or ClassicalTrackingConfig()).detectors)


# ------------------------------------------------------------------------------ the sequence
@functools.cache
def _sequence_elements() -> tuple[type, type, type]:
    """Python sequence elements (defined once acts is imported): measurements in, subset, tracks out."""
    import acts
    import acts.examples as ae

    class TrackMLMeasurements(ae.IReader):
        """Writes the event's :class:`Measurements` to the whiteboard as ``measurements``."""

        def __init__(self, measurements: Measurements) -> None:
            ae.IReader.__init__(self, "TrackMLMeasurements", acts.logging.WARNING)
            self.measurements = measurements
            self.output = ae.WriteDataHandle(self, ae.MeasurementContainer, "OutputMeasurements")
            self.output.initialize("measurements")

        def availableEvents(self) -> tuple[int, int]:
            return (0, 1)

        def read(self, context: Any) -> Any:
            m = self.measurements
            container = ae.MeasurementContainer()
            container.reserve(len(m))
            for volume, layer, sensitive, (loc0, loc1), (var0, var1) in zip(
                m.volume.tolist(),
                m.layer.tolist(),
                m.sensitive.tolist(),
                m.local.tolist(),
                m.variance.tolist(),
                strict=True,
            ):
                container.emplaceMeasurement(
                    acts.GeometryIdentifier(volume=volume, layer=layer, sensitive=sensitive),
                    [0, 1],
                    [loc0, loc1],
                    [var0, var1],
                )
            self.output(context, container)
            return ae.ProcessCode.SUCCESS

    class MeasurementSubset(ae.IAlgorithm):
        """``measurement_subset``: all measurements, as the seeding and the CKF read them.

        Made from the whiteboard's container (not in the reader): the subset points into the
        container it was made from, and writing a container moves it.
        """

        def __init__(self) -> None:
            ae.IAlgorithm.__init__(self, "MeasurementSubset", acts.logging.WARNING)
            self.input = ae.ReadDataHandle(self, ae.MeasurementContainer, "InputMeasurements")
            self.input.initialize("measurements")
            self.output = ae.WriteDataHandle(self, ae.MeasurementSubset, "OutputMeasurementSubset")
            self.output.initialize("measurement_subset")

        def execute(self, context: Any) -> Any:
            container = self.input(context.eventStore)
            self.output(context, ae.MeasurementSubset(container, list(range(len(container)))))
            return ae.ProcessCode.SUCCESS

    class TrackHits(ae.IAlgorithm):
        """Reads the resolved tracks back: measurement indices, measurement count, chi² per track."""

        def __init__(self, tracks: str, ckf_tracks: str) -> None:
            ae.IAlgorithm.__init__(self, "TrackHits", acts.logging.WARNING)
            self.input = ae.ReadDataHandle(self, ae.ConstTrackContainer, "InputTracks")
            self.input.initialize(tracks)
            self.ckf = ae.ReadDataHandle(self, ae.ConstTrackContainer, "InputCkfTracks")
            self.ckf.initialize(ckf_tracks)
            self.measurements: list[np.ndarray] = []
            self.counts: list[int] = []
            self.chi2: list[float] = []
            self.n_ckf = 0

        def execute(self, context: Any) -> Any:
            from_link = ae.IndexSourceLink.fromSourceLink
            for track in self.input(context.eventStore):
                indices = [
                    from_link(state.uncalibratedSourceLink).index()
                    for state in track.trackStatesReversed
                    if state.typeFlags.isMeasurement
                ]
                self.measurements.append(np.asarray(indices, np.int64))
                self.counts.append(int(track.nMeasurements))
                self.chi2.append(float(track.chi2))
            self.n_ckf = len(self.ckf(context.eventStore))
            return ae.ProcessCode.SUCCESS

    return TrackMLMeasurements, MeasurementSubset, TrackHits


def _add_reconstruction(sequencer: Any, setup: Any, config: ClassicalTrackingConfig) -> str:
    """Space points, seeding, parameter estimation, CKF and ambiguity resolution; the tracks' key."""
    import acts
    import acts.examples as ae

    u = acts.UnitConstants
    quiet = acts.logging.WARNING
    geometry, field_ = setup.tracking_geometry, setup.field
    selection = [
        acts.GeometryIdentifier(volume=volume, layer=layer)
        for volume, layers in SEEDING_LAYERS.items()
        for layer in layers
    ]
    sequencer.addAlgorithm(
        ae.SpacePointMaker(
            level=quiet,
            inputMeasurements="measurement_subset",
            outputSpacePoints="spacepoints",
            trackingGeometry=geometry,
            geometrySelection=selection,
        )
    )
    sequencer.addAlgorithm(
        ae.GridTripletSeedingAlgorithm(
            level=quiet,
            inputSpacePoints="spacepoints",
            outputSeeds="seeds",
            bFieldInZ=2.0 * u.T,
            minPt=config.min_pt * u.GeV,
            rMin=0.0,
            rMax=config.r_max * u.mm,
            deltaRMin=config.delta_r_min * u.mm,
            deltaRMax=config.delta_r_max_top * u.mm,
            deltaRMinTop=config.delta_r_min * u.mm,
            deltaRMaxTop=config.delta_r_max_top * u.mm,
            deltaRMinBottom=config.delta_r_min * u.mm,
            deltaRMaxBottom=config.delta_r_max_bottom * u.mm,
            collisionRegionMin=-config.collision_region * u.mm,
            collisionRegionMax=config.collision_region * u.mm,
            zMin=-config.z_max * u.mm,
            zMax=config.z_max * u.mm,
            cotThetaMax=config.cot_theta_max,
            rMinMiddle=config.r_middle[0] * u.mm,
            rMaxMiddle=config.r_middle[1] * u.mm,
            maxSeedsPerSpM=config.max_seeds_per_middle,
            sigmaScattering=config.sigma_scattering,
            radLengthPerSeed=config.rad_length_per_seed,
            impactMax=config.impact_max * u.mm,
        )
    )
    sequencer.addAlgorithm(
        ae.TrackParamsEstimationAlgorithm(
            level=quiet,
            inputSeeds="seeds",
            outputTrackParameters="estimatedparameters",
            outputSeeds="estimatedseeds",
            trackingGeometry=geometry,
            magneticField=field_,
            initialSigmas=[1 * u.mm, 1 * u.mm, 1 * u.degree, 1 * u.degree, 0 * u.e / u.GeV, 1 * u.ns],
            initialSigmaQoverPt=0.1 * u.e / u.GeV,
            initialSigmaPtRel=0.1,
            initialVarInflation=[1.0] * 6,
        )
    )
    # the selector's (eta bins, chi2 cut, outlier chi2 cut, measurements kept) for every surface
    cuts: tuple[list[float], list[float], list[float], list[int]] = (
        [],
        [config.chi2_measurement],
        [config.chi2_outlier],
        [config.branches_per_surface],
    )
    sequencer.addAlgorithm(
        ae.TrackFindingAlgorithm(
            level=quiet,
            measurementSelectorCfg=acts.MeasurementSelector.Config([(acts.GeometryIdentifier(), cuts)]),
            inputMeasurements="measurement_subset",
            inputInitialTrackParameters="estimatedparameters",
            inputSeeds="estimatedseeds",
            seedDeduplication=True,
            stayOnSeed=True,
            outputTracks="ckf_tracks",
            findTracks=ae.TrackFindingAlgorithm.makeTrackFinderFunction(geometry, field_, quiet),
            findTracksBrem=ae.TrackFindingAlgorithm.makeBremTrackFinderFunction(geometry, field_, quiet),
            trackingGeometry=geometry,
            magneticField=field_,
            trackSelectorCfg=acts.TrackSelector.Config(
                loc0Min=-config.loc0_max * u.mm,
                loc0Max=config.loc0_max * u.mm,
                absEtaMax=config.abs_eta_max,
                minMeasurements=config.min_measurements,
                maxHoles=config.max_holes,
                maxOutliers=config.max_outliers,
            ),
        )
    )
    sequencer.addAlgorithm(
        ae.GreedyAmbiguityResolutionAlgorithm(
            level=quiet,
            inputTracks="ckf_tracks",
            outputTracks="resolved_tracks",
            maximumSharedHits=config.maximum_shared_hits,
            nMeasurementsMin=config.min_measurements,
        )
    )
    return "resolved_tracks"


def reconstruct_event(event: Event, config: ClassicalTrackingConfig | None = None) -> ClassicalTracks:
    """ACTS seeding + CKF + greedy ambiguity resolution on one event's hits (never its truth).

    One thread. Returns one track label per hit (see
    :func:`~trackflow.classical.measurements.assign_hits`) and the times (s).
    """
    start = time.perf_counter()
    config = config or ClassicalTrackingConfig()
    try:
        import acts
        import acts.examples as ae
    except ImportError as error:  # an environment problem the user can fix
        raise ConfigError("classical tracking needs pyacts: pip install 'trackflow[sim]'") from error
    setup = module_map(config.detectors).setup
    measurements = hit_measurements(event.hits, config.detectors)
    reader_type, subset_type, collector_type = _sequence_elements()
    with tempfile.TemporaryDirectory(prefix="trackflow-ckf-") as workdir:
        sequencer = ae.Sequencer(
            events=1, numThreads=1, outputDir=workdir, logLevel=acts.logging.WARNING, trackFpes=False
        )
        sequencer.addReader(reader_type(measurements))
        sequencer.addAlgorithm(subset_type())
        tracks_key = _add_reconstruction(sequencer, setup, config)
        collector = collector_type(tracks_key, "ckf_tracks")
        sequencer.addAlgorithm(collector)
        sequencer.run()
        timing = pd.read_csv(Path(workdir) / "timing.csv")
    seconds = dict(zip(timing["identifier"], timing["time_perevent_s"].astype(float), strict=True))
    timings = {name: seconds.get(key, 0.0) for key, name in ACTS_STEPS.items()}
    for key, name in GLUE_STEPS.items():
        timings[name] = timings.get(name, 0.0) + seconds.get(key, 0.0)
    labels, shared = assign_hits(
        len(measurements), collector.measurements, np.asarray(collector.counts), np.asarray(collector.chi2)
    )
    hit_labels = np.empty(len(measurements), np.int64)
    hit_labels[measurements.order] = labels
    result = ClassicalTracks(
        event_id=int(event.event_id),
        hit_ids=event.hits["hit_id"].to_numpy(np.int64),
        track_labels=hit_labels,
        timings=timings,
        seconds=float(sum(timings[name] for name in ACTS_STEPS.values())),
        counts={
            "hits": len(measurements),
            "ckf_tracks": int(collector.n_ckf),
            "tracks": len(collector.measurements),
            "shared_hits": shared,
        },
    )
    result.wall_seconds = time.perf_counter() - start
    log.debug(
        "event %d: %d tracks from %d hits in %.2f s (ACTS algorithms), %.2f s wall",
        result.event_id,
        result.counts["tracks"],
        len(measurements),
        result.seconds,
        result.wall_seconds,
    )
    return result
