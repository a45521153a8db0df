"""The pipeline as a Triton Inference Server model repository (issue 30).

* :mod:`~trackflow.service.triton.export`: ``trackflow export triton DIR`` writes a repository,
  either one Python model running the whole pipeline (``custom``, the study's custom backend) or
  one Python model per stage chained by Triton's ensemble scheduler (``ensemble``), each with its
  instance count; the model weights are copied in, sha256-checked before and at load.
* :mod:`~trackflow.service.triton.models`: what those models run inside Triton's Python backend.
* :mod:`~trackflow.service.triton.server`: starts the ``tritonserver`` binary that the
  ``nvidia-pytriton`` wheel bundles, from the environment ``make venv-triton`` builds.

The top-level model is ``trackflow`` with the tensors of ``trackflow serve``
(:mod:`trackflow.service.protocol`), so one client drives both.
"""

from __future__ import annotations

from trackflow.service.triton.export import KINDS, TritonExportConfig, export_triton
from trackflow.service.triton.server import TritonServer, triton_environment

__all__ = ["KINDS", "TritonExportConfig", "TritonServer", "export_triton", "triton_environment"]
