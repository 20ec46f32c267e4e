"""``program`` is a leaf: it imports nothing of the project (DESIGN.md, import direction)."""

from __future__ import annotations

import ast
from pathlib import Path

import program

PROJECT = {"benchmarks", "controlplane", "dataplane", "lxd", "simplestreams", "tests", "webspaces"}


def test_program_imports_nothing_of_the_project() -> None:
    for path in sorted(Path(program.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            assert not {name.partition(".")[0] for name in names} & PROJECT, f"{path.name}: {names}"
