"""The rules between the parts (docs/ARCHITECTURE.md, "Rules"), checked on the source."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "core"
MAX_LINES = 600


def _module(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {_module(p): p for p in sorted(CORE.rglob("*.py"))}


def _imports(path: Path, *, top_level: bool) -> set[str]:
    """Project modules imported by ``path``: at module level, or inside functions."""
    tree = ast.parse(path.read_text())
    found = set()
    nodes = tree.body if top_level else [n for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                                         for n in ast.walk(f)]
    mods = _sources()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "core":
            for alias in node.names:        # "from core.x import y" may import module core.x.y
                full = f"{node.module}.{alias.name}"
                found.add(full if full in mods else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "core")
    return found


def test_no_import_cycles_between_project_modules():
    mods = _sources()
    graph = {m: {d for d in _imports(p, top_level=True) if d in mods and d != m} for m, p in mods.items()}
    # a package's __init__ importing its own submodules is how Python packages work
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_function_level_imports_of_project_modules():
    """Only the CLI imports lazily (its handlers, for a fast --help)."""
    hidden = {m: sorted(_imports(p, top_level=False)) for m, p in _sources().items() if m != "core.cli"}
    assert not {m: d for m, d in hidden.items() if d}


def test_modules_stay_small():
    big = {m: n for m, p in _sources().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"over {MAX_LINES} lines: {big}"


def test_only_the_ui_helpers_import_streamlit_and_nothing_imports_pages():
    for m, p in _sources().items():
        text = p.read_text()
        if m != "core.ui":
            assert not re.search(r"^\s*(import|from) streamlit", text, re.M), m
        assert not re.search(r"^\s*(import|from) pages\b", text, re.M), m


@pytest.mark.parametrize("folder", ["core", "pages", "docs", "bench", "tests"])
def test_no_references_to_files_or_issues_outside_the_repository(folder):
    pattern = re.compile(r"DESIGN\.md|\bissues? \d+|\bissue #?\d+", re.I)
    paths = [p for p in (REPO / folder).rglob("*") if p.suffix in (".py", ".md") and "fixtures" not in p.parts]
    hits = [f"{p.relative_to(REPO)}:{i}" for p in paths if p != Path(__file__)
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits


def test_readme_has_no_references_to_files_or_issues_outside_the_repository():
    pattern = re.compile(r"DESIGN\.md|\bissues? \d+|\bissue #?\d+", re.I)
    text = (REPO / "README.md").read_text().splitlines()
    assert not [i for i, line in enumerate(text, 1) if pattern.search(line)]
