"""Every third-party package that trackflow imports is declared in pyproject.toml.

The package's sources are read with ``ast`` (nothing is imported): every ``import x`` and
``from x import y``, at module level or inside a function, counts, except those under
``if TYPE_CHECKING:``, which never run. Import names are mapped to distributions with
``importlib.metadata.packages_distributions()``, so the check needs the environment the tests run
in (``make test`` installs every extra).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterator

from conftest import REPO

PACKAGE = REPO / "trackflow"

#: distributions that provide a declared one's module, and why that is allowed
EQUIVALENT_DISTRIBUTIONS = {
    # the same `faiss` module, built for CUDA; the `gpu` extra leaves the choice to the site
    "faiss-gpu": "faiss-cpu",
    "faiss-gpu-cu11": "faiss-cpu",
    "faiss-gpu-cu12": "faiss-cpu",
}
#: import name -> distribution, for optional packages that may be absent here (and so unknown to
#: packages_distributions): pyacts provides `acts`, imported only inside the simulation's functions
NOT_INSTALLED_FALLBACK = {"acts": "pyacts"}
#: import names allowed undeclared, each with its reason: only a try/except ImportError import of
#: an optional GPU package belongs here
ALLOWED_UNDECLARED: dict[str, str] = {}


def normalize(name: str) -> str:
    """A distribution name in PEP 503 form (lower case, runs of -_. as one -)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions() -> set[str]:
    """Distributions in pyproject.toml: the dependencies and every extra."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements.extend(extra)
    names = set()
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        assert match, f"pyproject.toml: cannot read requirement {requirement!r}"
        names.add(normalize(match.group(1)))
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_names(node: ast.AST) -> Iterator[tuple[str, int]]:
    """(top-level module name, line) of every runtime import below ``node``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for orelse in child.orelse:  # the else branch of `if TYPE_CHECKING` does run
                yield from _imported_names(orelse)
            continue
        if isinstance(child, ast.Import):
            for alias in child.names:
                yield alias.name.split(".")[0], child.lineno
        elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
            yield child.module.split(".")[0], child.lineno
        yield from _imported_names(child)


def third_party_imports() -> dict[str, list[str]]:
    """Import name -> the places (``path:line``) that import it, stdlib and trackflow left out."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for name, line in _imported_names(tree):
            if name in sys.stdlib_module_names or name in {"trackflow", "__future__"}:
                continue
            found.setdefault(name, []).append(f"{path.relative_to(REPO)}:{line}")
    return found


def test_the_walk_sees_the_imports() -> None:
    imports = third_party_imports()
    # a walk that found nothing would pass the test below vacuously
    assert {"numpy", "pandas", "torch", "dask", "psutil", "acts"} <= set(imports)
    assert "typing" not in imports and "trackflow" not in imports


def test_every_imported_package_is_declared() -> None:
    declared = declared_distributions()
    provided = importlib.metadata.packages_distributions()
    undeclared = []
    for name, places in sorted(third_party_imports().items()):
        if name in ALLOWED_UNDECLARED:
            continue
        distributions = provided.get(name) or [NOT_INSTALLED_FALLBACK.get(name, name)]
        candidates = {normalize(d) for d in distributions}
        candidates |= {EQUIVALENT_DISTRIBUTIONS[d] for d in candidates if d in EQUIVALENT_DISTRIBUTIONS}
        if not candidates & declared:
            where = ", ".join(places[:3]) + (f" and {len(places) - 3} more" if len(places) > 3 else "")
            undeclared.append(f"{name} (distribution {', '.join(sorted(candidates))}; imported at {where})")
    assert not undeclared, "imported but not declared in pyproject.toml: " + "; ".join(undeclared)
