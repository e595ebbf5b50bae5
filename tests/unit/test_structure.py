"""The code's shape, held by tests: short functions, and a core that never sees the engine."""

from __future__ import annotations

import ast
from pathlib import Path

import streams

STREAMS = Path(streams.__file__).parent
ENGINE = ("faust", "mode", "aiokafka", "rocksdict")
MAX_FUNCTION_LINES = 80


def modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def test_no_function_in_streams_is_longer_than_80_lines() -> None:
    long = []
    for path in modules(STREAMS):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(STREAMS)}:{node.lineno} {node.name} {lines}")
    assert not long, long


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def full_imports(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports (``faust.web``, ``aiokafka.errors``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_only_the_engine_imports_faust_mode_or_aiokafka() -> None:
    # streams/engine/ is the one adapter; streams/http/ may use Faust's public web API only
    leaks = {}
    for path in modules(STREAMS):
        inside = path.relative_to(STREAMS).parts[0]
        if inside == "engine":
            continue
        found = {n for n in full_imports(path) if n.split(".")[0] in ENGINE}
        if inside == "http":
            found -= {"faust", "faust.web"}
        if found:
            leaks[str(path.relative_to(STREAMS))] = sorted(found)
    assert not leaks, leaks


def test_http_takes_only_the_app_type_from_faust_itself() -> None:
    uses = []
    for path in modules(STREAMS / "http"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "faust"
                and node.attr != "App"
            ):
                uses.append(f"{path.name}:{node.lineno} faust.{node.attr}")
    assert not uses, uses


def test_the_processing_core_and_the_pure_rooms_never_import_the_engine() -> None:
    # the batch step, the checkpoint, windows, rules, containment and the pipeline are plain
    # typed code, unit-tested with in-memory fakes (tests/support/fakes.py)
    pure = [
        *modules(STREAMS / "processing"),
        *modules(STREAMS / "windows"),
        *modules(STREAMS / "rules"),
        STREAMS / "containment.py",
        STREAMS / "pipeline.py",
        STREAMS / "monitoring.py",
    ]
    leaks = {str(p.relative_to(STREAMS)): imported(p) & set(ENGINE) for p in pure}
    assert not {p: names for p, names in leaks.items() if names}
