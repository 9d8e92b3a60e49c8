"""The shape of the code base: no class a newcomer cannot read at a glance (issue 12 §4)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "streamcast"
MAX_CLASS_LINES = 160  # about 150, with room for a docstring that grows by a line or two


def class_sizes() -> list[tuple[str, int]]:
    """Every class in the package as (path:line Name, lines from `class` to its last line)."""
    sizes = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.ClassDef):
                where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}"
                sizes.append((where, node.end_lineno - node.lineno + 1))
    return sizes


def test_no_class_is_longer_than_about_150_lines():
    sizes = class_sizes()
    assert len(sizes) > 20  # the walk found the package
    offenders = [f"{where} ({lines} lines)" for where, lines in sizes if lines > MAX_CLASS_LINES]
    listed = "; ".join(offenders)
    assert not offenders, f"classes over {MAX_CLASS_LINES} lines; split each by responsibility: {listed}"
