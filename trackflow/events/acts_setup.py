"""ACTS set-up, once per process: the Generic Detector (= the TrackML detector), its 2 T field,
the digitization configurations, and the map from ACTS module ids to TrackML's
(``detectors.csv`` numbers the endcap modules differently: matched by nearest centre)."""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from trackflow.errors import ConfigError
from trackflow.events.detector import ModuleFrames, generic_detector, module_frames
from trackflow.events.digitization import geometric_config, smearing_config, write_config

__all__ = ["B_FIELD_T", "ActsDetector", "acts_detector", "decode_geometry_id", "module_code"]

#: the solenoid field along z (T)
B_FIELD_T = 2.0


@dataclass
class ActsDetector:
    """The Generic Detector, field, digitization configs and the map ACTS id -> TrackML module."""

    detector: Any  # keeps the C++ geometry alive
    tracking_geometry: Any
    field: Any
    surfaces: dict[Any, Any]  # ACTS GeometryIdentifier -> Surface
    frames: ModuleFrames
    acts_codes: np.ndarray  # sorted ACTS (volume, layer, sensitive) codes
    frame_rows: np.ndarray  # row in frames for each acts_codes entry
    digi_configs: dict[str, Any]  # DigitizationAlgorithm.Config per digitization kind

    def module_keys(self, geometry_id: np.ndarray) -> np.ndarray:
        """TrackML (volume_id, layer_id, module_id) [N,3] of ACTS geometry ids."""
        code = module_code(*decode_geometry_id(geometry_id))
        index = np.clip(np.searchsorted(self.acts_codes, code), 0, len(self.acts_codes) - 1)
        if len(code) and not np.array_equal(self.acts_codes[index], code):
            raise RuntimeError("ACTS produced a measurement on a surface that is not a sensitive module")
        keys: np.ndarray = self.frames.keys[self.frame_rows[index]]
        return keys


def module_code(volume: np.ndarray, layer: np.ndarray, sensitive: np.ndarray) -> np.ndarray:
    """One int64 per ACTS (volume, layer, sensitive) id, sortable: volume<<32 | layer<<20 | sensitive."""
    return (
        (np.asarray(volume, np.int64) << 32)
        | (np.asarray(layer, np.int64) << 20)
        | np.asarray(sensitive, np.int64)
    )


def decode_geometry_id(geometry_id: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ACTS geometry_id -> (volume, layer, sensitive): gid>>56, (gid>>36)&0xfff, (gid>>8)&0xfffff."""
    gid = np.asarray(geometry_id, np.uint64)
    return (
        (gid >> np.uint64(56)).astype(np.int64),
        ((gid >> np.uint64(36)) & np.uint64(0xFFF)).astype(np.int64),
        ((gid >> np.uint64(8)) & np.uint64(0xFFFFF)).astype(np.int64),
    )


@functools.lru_cache(maxsize=2)
def acts_detector(detectors_path: str) -> ActsDetector:
    """Build the ACTS geometry and match its modules to detectors.csv (cached per process)."""
    import acts
    import acts.examples
    import acts.examples.json

    detector, tracking_geometry = generic_detector()
    b_field = acts.ConstantBField(acts.Vector3(0.0, 0.0, B_FIELD_T * acts.UnitConstants.T))
    surfaces = tracking_geometry.geoIdSurfaceMap()
    context = acts.GeometryContext.dangerouslyDefaultConstruct()
    ids, centres = [], []
    for geo_id, surface in surfaces.items():
        if geo_id.sensitive > 0:
            ids.append((geo_id.volume, geo_id.layer, geo_id.sensitive))
            centres.append(np.asarray(surface.center(context)))
    acts_keys = np.asarray(ids, np.int64)
    acts_centres = np.asarray(centres, np.float64)
    frames = module_frames(detectors_path)
    if len(acts_keys) != len(frames):
        raise ConfigError(
            f"{detectors_path}: {len(frames)} modules, ACTS Generic Detector has {len(acts_keys)}"
        )
    # same volume/layer ids; module numbers differ in the endcaps: match by nearest centre
    frame_rows = np.full(len(acts_keys), -1)
    layer_code = frames.keys[:, 0] * 1000 + frames.keys[:, 1]
    acts_layer_code = acts_keys[:, 0] * 1000 + acts_keys[:, 1]
    for code in np.unique(acts_layer_code):
        candidates = np.flatnonzero(layer_code == code)
        wanted = np.flatnonzero(acts_layer_code == code)
        distance, nearest = cKDTree(frames.centre[candidates]).query(acts_centres[wanted])
        if len(candidates) != len(wanted) or distance.max() > 0.1 or len(np.unique(nearest)) != len(wanted):
            raise ConfigError(f"{detectors_path}: modules of layer {divmod(code, 1000)} do not match ACTS's")
        frame_rows[wanted] = candidates[nearest]
    codes = module_code(*acts_keys.T)
    order = np.argsort(codes)
    acts_sensitive = np.empty(len(frames), np.int64)
    acts_sensitive[frame_rows] = acts_keys[:, 2]
    digi_configs = {}
    with tempfile.TemporaryDirectory(prefix="trackflow-digi-") as tmp:
        for name, digi in (
            ("smeared", smearing_config()),
            ("geometric", geometric_config(frames, acts_sensitive)),
        ):
            path = write_config(digi, Path(tmp) / f"{name}.json")
            digi_configs[name] = acts.examples.DigitizationAlgorithm.Config(
                digitizationConfigs=acts.examples.json.readDigiConfigFromJson(str(path)),
                surfaceByIdentifier=surfaces,
                inputSimHits="simhits",
                outputMeasurements="measurements",
                outputClusters="clusters",
                outputMeasurementParticlesMap="measurement_particles_map",
                outputMeasurementSimHitsMap="measurement_simhits_map",
                outputParticleMeasurementsMap="particle_measurements_map",
                outputSimHitMeasurementsMap="simhit_measurements_map",
            )
    return ActsDetector(
        detector=detector,
        tracking_geometry=tracking_geometry,
        field=b_field,
        surfaces=surfaces,
        frames=frames,
        acts_codes=codes[order],
        frame_rows=frame_rows[order],
        digi_configs=digi_configs,
    )
