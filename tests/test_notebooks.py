"""The notebooks in ``notebooks/`` run top to bottom in a real Jupyter kernel, and are stripped in git.

Execution: a kernel spec for this interpreter is installed into a temporary prefix (found through
``JUPYTER_PATH``, so nothing is written into the virtualenv or the home directory), each notebook's
first code cell gets its parameters replaced (an output directory under tmp_path, a local cluster),
and nbclient runs every cell; a cell that raises fails the test. The notebooks run in file order and
share one output directory, as a user would run them: 02 benchmarks the events 01 simulated, 03
estimates from the bench.json 02 wrote (each falls back to making its own inputs when run alone).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, require, slurm_problem

NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL_NAME = "trackflow-test"
#: seconds one cell may run before the test fails (the sweep of 02 is the longest cell)
CELL_TIMEOUT_S = 300
#: PNG files each notebook must leave in its output directory
EXPECTED_FIGURES = {
    "01-quickstart": ["01-event-display.png", "01-efficiency.png"],
    "02-throughput": [
        "bench/throughput_vs_workers.png",
        "bench/throughput_vs_concurrency.png",
        "bench/modes.png",
        "bench/stages.png",
    ],
    "03-online-estimate": [
        "estimate/nodes_vs_rate.png",
        "estimate/latency_vs_rate.png",
        "estimate/nodes_vs_event_size.png",
    ],
    "04-online-service": ["service/latency_vs_rate.png", "service/backlog.png"],
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: trackflow modules a notebook may use besides the names of ``trackflow.__all__``: the errors
#: (documented in docs/design.md) and metrics, for ``binned_efficiency`` (not exported yet)
PUBLIC_MODULES = {"trackflow", "trackflow.errors", "trackflow.metrics"}


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def set_parameters(notebook: Any, values: dict[str, Any]) -> None:
    """Replace ``NAME = ...`` lines of the notebook's first code cell by ``NAME = repr(value)``.

    Every name must already be a parameter there: a renamed parameter fails loudly instead of
    silently running the notebook with its defaults.
    """
    cell = next(c for c in notebook.cells if c.cell_type == "code")
    source = cell.source
    for name, value in values.items():
        pattern = re.compile(rf"^{name} = .*$", flags=re.MULTILINE)
        if not pattern.search(source):
            raise AssertionError(f"{name} is not a parameter of the first code cell")
        source = pattern.sub(lambda _, name=name, value=value: f"{name} = {value!r}", source, count=1)
    cell.source = source


@pytest.fixture(scope="session")
def jupyter_kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Jupyter kernel spec that starts this interpreter, and an environment in which it finds
    trackflow; yields the kernel name."""
    require(_has_module("nbclient") and _has_module("ipykernel"), "nbclient/ipykernel not installed")
    prefix = tmp_path_factory.mktemp("jupyter")
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", KERNEL_NAME],
        check=True,
        capture_output=True,
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
        env.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        env.delenv("TRACKFLOW_CLUSTER", raising=False)  # CI's Slurm is for the slurm tests
        yield KERNEL_NAME


@pytest.fixture(scope="module")
def notebook_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one output directory the notebooks share (events, bench.json, PNGs)."""
    return tmp_path_factory.mktemp("notebook-out")


def test_there_are_notebooks() -> None:
    assert [p.stem for p in NOTEBOOKS] == sorted(EXPECTED_FIGURES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_outputs_stripped_in_git(path: Path) -> None:
    """Committed notebooks carry no outputs (``tools/strip_notebooks.py`` strips them)."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    dirty = [
        i
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; run tools/strip_notebooks.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_in_first_cell(path: Path) -> None:
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    first = next(c for c in notebook.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", [])
    assert re.search(r"^OUT_DIR = ", first.source, flags=re.MULTILINE)


def execute(path: Path, kernel: str, parameters: dict[str, Any], out_dir: Path) -> Any:
    """Run the notebook at ``path`` with ``parameters`` in ``kernel``; check its figures in
    ``out_dir``; return the executed notebook (also written to ``out_dir`` to read after a failure)."""
    import nbformat
    from nbclient import NotebookClient

    require(_has_module("acts"), "pyacts not installed (the notebooks simulate their events)")
    notebook = nbformat.read(path, as_version=4)
    set_parameters(notebook, {"OUT_DIR": str(out_dir), **parameters})
    client = NotebookClient(
        notebook,
        kernel_name=kernel,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},  # cwd of the kernel, as in JupyterLab
    )
    try:
        client.execute()  # raises CellExecutionError naming the cell when one fails
    finally:
        nbformat.write(notebook, out_dir / f"{path.stem}.executed.ipynb")

    for name in EXPECTED_FIGURES[path.stem]:
        png = out_dir / name
        assert png.is_file(), f"{path.name} did not write {name}"
        assert png.read_bytes()[:8] == PNG_MAGIC
    shown = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert len(shown) >= len(EXPECTED_FIGURES[path.stem]), "figures written but not displayed"
    return notebook


def printed(notebook: Any) -> str:
    """Everything the notebook's cells printed (stdout and stderr)."""
    return "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream"
    )


def trackflow_names(source: str) -> set[str]:
    """``trackflow.X`` attributes and ``trackflow...`` modules that Python source uses."""
    used = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "trackflow":
            used.add(f"trackflow.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trackflow"):
            used.add(node.module or "")
        elif isinstance(node, ast.Import):
            used.update(alias.name for alias in node.names if alias.name.startswith("trackflow"))
    return used


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_public_api_only(path: Path) -> None:
    """Notebooks use what a user gets: ``trackflow.__all__`` and the public modules."""
    import nbformat

    import trackflow

    notebook = nbformat.read(path, as_version=4)
    used = set().union(*(trackflow_names(c.source) for c in notebook.cells if c.cell_type == "code"))
    public = {f"trackflow.{name}" for name in trackflow.__all__} | PUBLIC_MODULES
    assert used, f"{path.name} does not use trackflow"
    assert not used - public, f"{path.name} uses non-public {sorted(used - public)}"


@pytest.mark.notebooks
@pytest.mark.slow
@pytest.mark.sim
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, jupyter_kernel: str, notebook_out: Path, sim_detectors: Path) -> None:
    """Every cell runs without error; every figure is displayed and written as a PNG."""
    parameters = {"CLUSTER": "local"} if path.stem == "01-quickstart" else {}
    notebook = execute(path, jupyter_kernel, parameters, notebook_out)
    if path.stem == "01-quickstart":
        assert re.search(r"dashboard: http://\S+/status", printed(notebook))


@pytest.mark.notebooks
@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.sim
def test_quickstart_on_slurm(
    jupyter_kernel: str, notebook_out: Path, tmp_path: Path, sim_detectors: Path
) -> None:
    """01 with ``CLUSTER = "slurm-cpu"``: its workers are Slurm jobs of the shipped cpu profile
    (the events of the local run are reused when it ran first)."""
    problem = slurm_problem()
    require(problem is None, f"no Slurm reachable (slurm/local/up.sh): {problem}")
    parameters: dict[str, Any] = {"CLUSTER": "slurm-cpu"}
    if (notebook_out / "events").is_dir():
        parameters["EVENTS_DIR"] = str(notebook_out / "events")
    notebook = execute(NOTEBOOK_DIR / "01-quickstart.ipynb", jupyter_kernel, parameters, tmp_path)
    text = printed(notebook)
    assert "cluster 'slurm-cpu' up" in text
    assert re.search(r"dashboard: http://\S+/status", text)
    assert re.search(r"events: \d+ done, 0 failed", text)
