"""The tracking package sits below the search, compare and the CLI, and knows tasks only through the plan."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import xgrid.tracking

FORBIDDEN = ("xgrid.search", "xgrid.compare", "xgrid.cli", "xgrid.tasks")


def test_tracking_imports_none_of_search_compare_cli_or_tasks():
    for path in Path(xgrid.tracking.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not [n for n in names if n.startswith(FORBIDDEN)], (path.name, names)


def test_importing_the_package_imports_no_backend():
    code = "import sys, xgrid.tracking; print('mlflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
