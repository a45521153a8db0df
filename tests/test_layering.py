"""The rooms' import rules, read from the source (no module is imported).

Data flows one way: core → events → pipeline → cluster → run → bench / service → cli, with
estimation numbers-only beside them and classical (the ACTS CKF baseline) beside pipeline, reading
events only; Dask is imported only in cluster, run, bench and service;
no module imports a private name (``_x``) of another; no import circle, between rooms or inside
one. docs/design.md explains each room.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "trackflow"

CORE = {"config", "errors", "files", "memory", "figures", "percentiles"}
#: room -> the trackflow rooms it may import (itself and the core always)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "events": set(),
    "metrics": {"events"},
    "pipeline": {"events", "metrics"},
    "classical": {"events", "metrics"},
    "estimation": set(),
    "cluster": set(),
    "run": {"events", "pipeline", "metrics", "cluster"},
    "bench": {"events", "pipeline", "metrics", "cluster", "run", "estimation"},
    "service": {"events", "pipeline", "metrics", "cluster", "run", "estimation"},
    "cli": {"events", "pipeline", "classical", "metrics", "cluster", "run", "bench", "estimation", "service"},
    "package": set(),  # trackflow/__init__.py names its public modules as strings only
}
#: room -> third-party top-level packages it must never import
FORBIDDEN: dict[str, set[str]] = {
    "core": {"distributed", "dask_jobqueue", "torch"},
    "events": {"dask", "distributed", "dask_jobqueue", "torch"},
    "metrics": {"dask", "distributed", "dask_jobqueue", "torch"},
    "pipeline": {"dask", "distributed", "dask_jobqueue"},
    "classical": {"dask", "distributed", "dask_jobqueue", "torch"},
    "estimation": {"dask", "distributed", "dask_jobqueue", "torch"},
    "cluster": {"torch"},
    "package": {"dask", "distributed", "dask_jobqueue", "torch"},
}


def room_of(module: str) -> str:
    """``trackflow.run.executors`` -> ``run``; core modules -> ``core``."""
    parts = module.split(".")
    if parts == ["trackflow"]:
        return "package"
    name = parts[1]
    if name in CORE:
        return "core"
    if name == "__main__":
        return "cli"
    return name


def module_name(path: Path) -> str:
    relative = path.relative_to(REPO).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "models" not in p.relative_to(PACKAGE).parts[:2])


def imports(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, module, names) of every import in ``path``, lazy ones inside functions included."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base == "__future__":
                continue
            yield node.lineno, base, [a.name for a in node.names]


@pytest.mark.parametrize("path", package_modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_imports_run_one_way(path: Path) -> None:
    room = room_of(module_name(path))
    problems = []
    for line, module, names in imports(path):
        top = module.split(".")[0]
        if top == "trackflow":
            targets = [module] if module != "trackflow" else [f"trackflow.{n}" for n in names]
            for target in targets:
                other = room_of(target)
                if other not in {room, "core", "package"} and other not in ALLOWED[room]:
                    problems.append(f"line {line}: {room} imports {target} ({other})")
        elif top in FORBIDDEN.get(room, set()):
            if room == "core" and module == "dask.config":
                continue  # trackflow.config is dask.config's settings, not a Dask computation
            problems.append(f"line {line}: {room} imports {module}")
    assert not problems, f"{path.relative_to(REPO)}:\n" + "\n".join(problems)


def test_dask_lives_in_cluster_run_bench_and_service_only() -> None:
    rooms = {
        room_of(module_name(path))
        for path in package_modules()
        for _, module, _ in imports(path)
        if module.split(".")[0] in {"distributed", "dask_jobqueue"}
        or (module.split(".")[0] == "dask" and module != "dask.config")
    }
    assert rooms <= {"cluster", "run", "bench", "service"}, rooms


def source_files() -> list[Path]:
    return [*package_modules(), *sorted((REPO / "benchmarks").glob("*.py"))]


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_private_name_crosses_a_module(path: Path) -> None:
    """``from trackflow.x import _name`` (or a sibling benchmark's ``_name``), and ``module._name``
    on an imported trackflow module, are refused: a shared name is public in its owner."""
    siblings = {p.stem for p in (REPO / "benchmarks").glob("*.py")}
    tree = ast.parse(path.read_text(), str(path))
    modules: set[str] = set()
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in {"trackflow", *siblings}:
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    problems.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                else:
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in {"trackflow", *siblings}:
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            problems.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    assert not problems, f"{path.relative_to(REPO)}:\n" + "\n".join(problems)


def test_nothing_is_left_of_the_old_workflow_package() -> None:
    assert not (PACKAGE / "workflow").exists()
    assert (PACKAGE / "cluster" / "jobqueue.yaml").is_file()  # package data, see pyproject.toml


def test_the_ckf_baseline_is_a_room_of_its_own() -> None:
    # reconstruction, not event I/O: it left events/ for classical/, with no shim behind
    assert not (PACKAGE / "events" / "classical_tracking.py").exists()
    assert (PACKAGE / "classical" / "ckf.py").is_file()


def resolve(module: str, names: list[str]) -> list[str]:
    """The trackflow modules an import statement loads: ``from trackflow.run import executors``
    loads ``trackflow.run.executors`` (a submodule), ``from trackflow.run.executors import MODES``
    loads ``trackflow.run.executors``."""
    known = {module_name(path) for path in package_modules()}
    submodules = [f"{module}.{name}" for name in names if f"{module}.{name}" in known]
    return submodules or ([module] if module in known else [])


def type_checking_lines(path: Path) -> set[int]:
    """Lines of the imports under ``if TYPE_CHECKING:``: names for the type checker only, never
    imported when the program runs."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        test = node.test if isinstance(node, ast.If) else None
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            for inner in node.body:
                lines.update(n.lineno for n in ast.walk(inner) if isinstance(n, ast.Import | ast.ImportFrom))
    return lines


def import_graph() -> dict[str, set[str]]:
    """module -> the trackflow modules it imports when it runs, lazy ones inside functions
    included (a circle closed by a lazy import is still one: neither module can be read without
    the other); imports under ``if TYPE_CHECKING:`` are annotations, not dependencies."""
    graph: dict[str, set[str]] = {}
    for path in package_modules():
        name = module_name(path)
        targets = graph.setdefault(name, set())
        typing_only = type_checking_lines(path)
        for line, module, names in imports(path):
            if module.split(".")[0] == "trackflow" and line not in typing_only:
                targets.update(t for t in resolve(module, names) if t != name)
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan): each is a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_no_import_circle_in_the_package() -> None:
    circles = import_circles(import_graph())
    assert not circles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_the_circle_check_finds_a_circle() -> None:
    # the shape cluster/handle <-> cluster/slurm had, one import lazy, through a third module
    graph = {"handle": {"squeue"}, "squeue": {"slurm"}, "slurm": {"handle", "tls"}, "tls": set()}
    assert import_circles(graph) == [["handle", "slurm", "squeue"]]
    graph["squeue"] = set()
    assert import_circles(graph) == []
