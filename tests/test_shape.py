"""The code stays in a shape a reader can hold: short functions, a thin command line."""

from __future__ import annotations

import ast
from pathlib import Path

import automation

PACKAGE = Path(automation.__file__).parent
MAX_FUNCTION_LINES = 50
MAX_CLI_MODULE_LINES = 300


def functions(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}",
             (node.end_lineno or node.lineno) - node.lineno + 1)
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]


def test_no_function_is_over_fifty_lines() -> None:
    long = [(where, size) for path in sorted(PACKAGE.rglob("*.py"))
            for where, size in functions(path) if size > MAX_FUNCTION_LINES]

    assert long == []


def test_each_part_of_the_command_line_is_under_three_hundred_lines() -> None:
    sizes = {path.name: len(path.read_text(encoding="utf-8").splitlines())
             for path in (PACKAGE / "cli").glob("*.py")}

    assert sizes and all(size < MAX_CLI_MODULE_LINES for size in sizes.values()), sizes


def test_every_package_of_the_code_is_installed() -> None:
    """`pip install .` ships exactly the packages listed in pyproject.toml: a new one left out
    works from the repository and breaks the installed `emergency` command."""
    import tomllib

    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    found = {".".join(path.parent.relative_to(PACKAGE.parent).parts)
             for path in PACKAGE.rglob("__init__.py")}

    assert found - listed == set()
