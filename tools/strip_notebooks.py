"""Strip outputs from notebooks before they are committed (``tests/test_notebooks.py`` checks it).

Usage::

    .venv/bin/python tools/strip_notebooks.py                 # every notebooks/*.ipynb, in place
    .venv/bin/python tools/strip_notebooks.py --check         # exit 1 naming the notebooks with outputs
    .venv/bin/python tools/strip_notebooks.py path.ipynb ...

Code cells lose their outputs, execution counts and execution timing metadata; cell tags (the
``parameters`` tag) and the notebook's kernel spec are kept.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
#: per-cell metadata Jupyter adds while running; never worth a diff
RUNTIME_METADATA = ("execution", "collapsed", "scrolled")


def strip(notebook: nbformat.NotebookNode) -> bool:
    """Remove outputs and run-time metadata in place; True when anything changed."""
    changed = False
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        if cell.outputs or cell.execution_count is not None:
            cell.outputs = []
            cell.execution_count = None
            changed = True
        for key in RUNTIME_METADATA:
            if key in cell.metadata:
                del cell.metadata[key]
                changed = True
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if any has outputs")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    dirty = []
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        if strip(notebook):
            dirty.append(path)
            if not args.check:
                nbformat.validate(notebook)
                nbformat.write(notebook, path)
    for path in dirty:
        print(f"{path}: {'has outputs' if args.check else 'stripped'}")
    return 1 if args.check and dirty else 0


if __name__ == "__main__":
    sys.exit(main())
