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


# ----------------------------------------------------------------------------- layers

# docs/ARCHITECTURE.md, "Rules": the layers, bottom up, and what each may import.
BASICS = {"core.errors", "core.io", "core.keypoints", "core.metrics", "core.images", "core.polygons",
          "core.heatmaps", "core.stats"}
RUN_LAYER = {"core.runs", "core.run_writer", "core.distributed", "core.engine"}
TOP = {"core", "core.__main__", "core.cli", "core.demo", "core.models", "core.bench", "core.ui"}
# model and metric files: basics only (and their own siblings)
MODEL_FILES = {"core.classification.model", "core.temporal.models.conv3d", "core.temporal.models.convlstm",
               "core.temporal.models.deciwatch", "core.temporal.models.identity", "core.temporal.models.filters",
               "core.temporal.models.losses"}


def layer(module: str) -> str:
    if module in BASICS:
        return "basics"
    if module in RUN_LAYER:
        return "runs"
    if module in TOP:
        return "top"
    for pkg in ("synthetic", "estimator", "classification", "temporal"):
        if module == f"core.{pkg}" or module.startswith(f"core.{pkg}."):
            return pkg
    return "unknown"


ALLOWED = {
    "basics": {"basics"},
    "synthetic": {"basics", "synthetic"},
    "estimator": {"basics", "estimator"},
    "runs": {"basics", "runs"},
    "classification": {"basics", "synthetic", "estimator", "runs", "classification"},
    "temporal": {"basics", "synthetic", "estimator", "runs", "temporal"},
    "top": {"basics", "synthetic", "estimator", "runs", "classification", "temporal", "top"},
}


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that points up or sideways against the layers above."""
    bad = []
    for m, deps in graph.items():
        for d in deps:
            if layer(d) not in ALLOWED.get(layer(m), set()):
                bad.append(f"{m} ({layer(m)}) imports {d} ({layer(d)})")
            elif m in MODEL_FILES and layer(d) != "basics" and not d.startswith(m.rsplit(".", 1)[0]):
                bad.append(f"{m} (a model file) imports {d}")
    return sorted(bad)


def _graph() -> dict[str, set[str]]:
    mods = _sources()
    return {m: {d for d in _imports(p, top_level=True) if d in mods and d != m} for m, p in mods.items()}


def test_every_module_has_a_layer():
    assert not [m for m in _sources() if layer(m) == "unknown"]


def test_imports_point_down_the_layers():
    assert violations(_graph()) == []


def test_the_layer_check_catches_imports_that_point_up():
    """The two imports the layers forbid, once found in the code, stay caught."""
    assert violations({"core.synthetic.estimator": {"core.heatmaps", "core.temporal.sequences"}}) == [
        "core.synthetic.estimator (synthetic) imports core.temporal.sequences (temporal)"]
    assert violations({"core.temporal.refine": {"core.models"}}) == [
        "core.temporal.refine (temporal) imports core.models (top)"]
    assert violations({"core.temporal.models.conv3d": {"core.runs"}}) == [
        "core.temporal.models.conv3d (a model file) imports core.runs"]
    assert violations({"core.classification.train": {"core.temporal.windows"}})
