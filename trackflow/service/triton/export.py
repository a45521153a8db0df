"""``trackflow export triton DIR``: the pipeline as a Triton model repository.

``custom`` (the study's custom backend)::

    DIR/trackflow/config.pbtxt        backend "python", instance_group count N
    DIR/trackflow/1/model.py          -> trackflow.service.triton.models.WholePipeline
    DIR/trackflow/1/models/           the model files and manifest.json (sha256-checked)

``ensemble`` (one model per stage, chained by Triton's ensemble scheduler)::

    DIR/trackflow/config.pbtxt        platform "ensemble": hits -> embedding -> ... -> track_id
    DIR/trackflow/1/models/           the model files, read by every stage model
    DIR/trackflow_<stage>/...         one Python model per stage, instance_group count N

Both serve the model ``trackflow`` with ``trackflow serve``'s tensors. The weights' sha256 are
checked before they are copied and again when each model loads. Triton runs the models with the
Python that has trackflow installed beside its ``numpy<2`` (``make venv-triton``;
:mod:`trackflow.service.triton.server` starts it).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from trackflow import config
from trackflow.errors import ConfigError
from trackflow.pipeline import model_files
from trackflow.pipeline.graph import STAGE_NAMES
from trackflow.service.protocol import INPUTS, MODEL_NAME, OUTPUT, OUTPUT_DATATYPE
from trackflow.service.triton.models import STATE

#: repository kinds
KINDS = ("custom", "ensemble")
#: device -> Triton's instance kind (a ``KIND_GPU`` instance runs on the GPU Triton gives it:
#: :func:`trackflow.service.triton.models.instance_device`)
INSTANCE_KINDS = {"cpu": "KIND_CPU", "cuda": "KIND_GPU"}
#: where the model files go, relative to the repository
MODELS_SUBDIR = f"{MODEL_NAME}/1/models"


@dataclass
class TritonExportConfig:
    """What ``trackflow export triton`` writes (None = the default under ``serve.triton.`` in
    ``trackflow.yaml``).

    ``out_dir``: the repository; ``kind``: ``custom`` or ``ensemble``; ``instances``: model
    instances (processes) of each model Triton runs, the ensemble's stages each; ``threads``:
    torch / FAISS threads per instance; ``models_dir``: the models (None: the shipped ones);
    ``overwrite``: replace an existing repository.
    """

    out_dir: Path
    kind: str | None = None
    instances: int | None = None
    threads: int | None = None
    device: str | None = None
    models_dir: Path | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.kind = str(self.kind or config.get("serve.triton.kind"))
        self.instances = int(self.instances or config.get("serve.triton.instances"))
        self.threads = int(self.threads or config.get("serve.triton.threads"))
        self.device = str(self.device or config.get("serve.triton.device"))
        if self.kind not in KINDS:
            raise ConfigError(f"serve.triton.kind {self.kind!r}: choose one of {', '.join(KINDS)}")
        if self.instances < 1 or self.threads < 1:
            raise ConfigError(f"instances {self.instances}, threads {self.threads}: each must be >= 1")
        if self.device not in INSTANCE_KINDS:
            raise ConfigError(
                f"serve.triton.device {self.device!r}: choose one of {', '.join(INSTANCE_KINDS)}"
            )


def _tensor(name: str, datatype: str, dims: list[int]) -> str:
    return f'  {{ name: "{name}" data_type: {datatype} dims: [ {", ".join(map(str, dims))} ] }}'


def _io(section: str, tensors: list[str]) -> str:
    return f"{section} [\n" + ",\n".join(tensors) + "\n]\n"


def _hit_tensors() -> list[str]:
    return [_tensor(name, f"TYPE_{types[0]}", [-1]) for name, types in INPUTS.items()]


def _output_tensor() -> list[str]:
    return [_tensor(OUTPUT, f"TYPE_{OUTPUT_DATATYPE}", [-1])]


def _state_tensors() -> list[str]:
    return [_tensor(name, datatype, dims) for name, (datatype, _, dims) in STATE.items()]


def _python_model(name: str, inputs: list[str], outputs: list[str], cfg: TritonExportConfig) -> str:
    return (
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: 0\n'
        + _io("input", inputs)
        + _io("output", outputs)
        + f"instance_group [ {{ count: {cfg.instances} kind: {INSTANCE_KINDS[str(cfg.device)]} }} ]\n"
        + f'parameters: {{ key: "models_dir" value: {{ string_value: "{MODELS_SUBDIR}" }} }}\n'
        + f'parameters: {{ key: "threads" value: {{ string_value: "{cfg.threads}" }} }}\n'
    )


_MODEL_PY = '''"""Written by `trackflow export triton`: the code is trackflow's ({target})."""

import triton_python_backend_utils as pb_utils

from trackflow.service.triton.models import {cls}


class TritonPythonModel:
    def initialize(self, args):
        self.model = {cls}(args, pb_utils{extra})

    def execute(self, requests):
        return self.model.execute(requests)
'''


def _write_model(repo: Path, name: str, config_text: str, cls: str, extra: str = "") -> None:
    version = repo / name / "1"
    version.mkdir(parents=True, exist_ok=True)
    (repo / name / "config.pbtxt").write_text(config_text)
    target = f"trackflow.service.triton.models.{cls}"
    (version / "model.py").write_text(_MODEL_PY.format(cls=cls, extra=extra, target=target))


def _ensemble_config() -> str:
    steps = []
    previous: str | None = None
    for stage in STAGE_NAMES:
        if previous is None:
            inputs = {name: name for name in INPUTS}
        else:
            inputs = {name: f"{previous}_{name}" for name in STATE}
        outputs = {OUTPUT: OUTPUT} if stage == STAGE_NAMES[-1] else {n: f"{stage}_{n}" for n in STATE}
        maps = "".join(f'      input_map {{ key: "{k}" value: "{v}" }}\n' for k, v in inputs.items())
        maps += "".join(f'      output_map {{ key: "{k}" value: "{v}" }}\n' for k, v in outputs.items())
        steps.append(
            f'    {{\n      model_name: "{MODEL_NAME}_{stage}"\n      model_version: -1\n{maps}    }}'
        )
        previous = stage
    return (
        f'name: "{MODEL_NAME}"\nplatform: "ensemble"\nmax_batch_size: 0\n'
        + _io("input", _hit_tensors())
        + _io("output", _output_tensor())
        + "ensemble_scheduling {\n  step [\n"
        + ",\n".join(steps)
        + "\n  ]\n}\n"
    )


def _copy_models(models_dir: Path, target: Path) -> None:
    manifest = model_files.read_manifest(models_dir)
    model_files.verify(manifest)  # a tampered file is refused here, not in Triton's log
    target.mkdir(parents=True)
    shutil.copy2(models_dir / model_files.MANIFEST_NAME, target / model_files.MANIFEST_NAME)
    for entry in manifest.stages.values():
        if entry.file is not None:
            (target / entry.file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(models_dir / entry.file, target / entry.file)


def export_triton(cfg: TritonExportConfig) -> list[Path]:
    """Write the repository (module docstring); returns the models' directories. The repository
    appears whole or not at all (written beside it, then renamed)."""
    out = cfg.out_dir
    if out.exists() and any(out.iterdir()) and not cfg.overwrite:
        raise ConfigError(f"{out}: exists and is not empty (--overwrite replaces it)")
    models_dir = Path(cfg.models_dir) if cfg.models_dir is not None else model_files.shipped_models_dir()
    out.parent.mkdir(parents=True, exist_ok=True)
    repo = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _copy_models(models_dir, repo / MODELS_SUBDIR)
        if cfg.kind == "custom":
            text = _python_model(MODEL_NAME, _hit_tensors(), _output_tensor(), cfg)
            _write_model(repo, MODEL_NAME, text, "WholePipeline")
        else:
            (repo / MODEL_NAME / "config.pbtxt").write_text(_ensemble_config())
            for index, stage in enumerate(STAGE_NAMES):
                inputs = _hit_tensors() if index == 0 else _state_tensors()
                outputs = _output_tensor() if stage == STAGE_NAMES[-1] else _state_tensors()
                text = _python_model(f"{MODEL_NAME}_{stage}", inputs, outputs, cfg)
                _write_model(repo, f"{MODEL_NAME}_{stage}", text, "Stage", extra=f', "{stage}"')
        repo.chmod(0o755)  # mkdtemp's 0700 would hide the repository from another user's Triton
        if out.exists():
            shutil.rmtree(out)
        repo.rename(out)
    finally:
        if repo.exists():
            shutil.rmtree(repo)
    return sorted(p for p in out.iterdir() if p.is_dir())
