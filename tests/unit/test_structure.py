"""The code's shape, held by tests: short functions, a core that never sees the engine, and
rooms of ``streams/`` that import each other one way only."""

from __future__ import annotations

import ast
from pathlib import Path

import streams

STREAMS = Path(streams.__file__).parent
#: the source folders outside the installed package: the rule on length holds there too
PROJECT = Path(__file__).resolve().parents[2]
OUTSIDE = ("models", "deploy", "export", "bench")
ENGINE = ("faust", "mode", "aiokafka", "rocksdict")
MAX_FUNCTION_LINES = 80


def modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def long_functions(folder: Path) -> list[str]:
    long = []
    for path in modules(folder):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(folder)}:{node.lineno} {node.name} {lines}")
    return long


def test_no_function_in_streams_is_longer_than_80_lines() -> None:
    long = long_functions(STREAMS)
    assert not long, long


def test_no_function_outside_tests_is_longer_than_80_lines() -> None:
    found = {name: long_functions(PROJECT / name) for name in OUTSIDE}
    assert all((PROJECT / name).is_dir() for name in OUTSIDE)
    assert not {name: long for name, long in found.items() if long}


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
        *modules(STREAMS / "alerts"),
        *modules(STREAMS / "scoring"),
        STREAMS / "monitoring.py",
        STREAMS / "live.py",
    ]
    leaks = {str(p.relative_to(STREAMS)): imported(p) & set(ENGINE) for p in pure}
    assert not {p: names for p, names in leaks.items() if names}


def room_of(path: Path) -> str:
    """A room of ``streams/``: a sub-folder, or a module beside them."""
    parts = path.relative_to(STREAMS).parts
    return parts[0] if len(parts) > 1 else path.stem


def room_imports(path: Path) -> set[str]:
    """The rooms ``path`` imports from, type-only imports included."""
    package = list(path.relative_to(STREAMS).parts[:-1])
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = package[: len(package) - (node.level - 1)]
            target = [*base, *(node.module.split(".") if node.module else [])]
            # ``from .. import x``: x is the room (a sub-folder or a module)
            rooms.update([target[0]] if target else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("streams."):
            rooms.add(node.module.split(".")[1])  # type: ignore[union-attr]
        elif isinstance(node, ast.Import):
            rooms.update(a.name.split(".")[1] for a in node.names if a.name.startswith("streams."))
    return rooms


def room_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in modules(STREAMS):
        room = room_of(path)
        found = room_imports(path) - {room, "__init__"}
        graph.setdefault(room, set()).update(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle as the path that closes it (depth-first, one per back edge)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(room: str, path: list[str]) -> None:
        state[room] = 1
        for nxt in sorted(graph.get(room, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[room] = 2

    for room in sorted(graph):
        if room not in state:
            visit(room, [room])
    return found


def test_the_cycle_finder_finds_a_cycle_and_accepts_layers() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"top": {"mid", "low"}, "mid": {"low"}, "low": set()}) == []


def test_no_import_cycle_between_the_rooms_of_streams() -> None:
    graph = room_graph()
    assert {"processing", "engine", "http", "worker"} <= graph.keys()
    assert not cycles(graph)


def test_the_layers_run_one_way() -> None:
    # the composition root on top; the engine and HTTP beside each other; the core below
    graph = room_graph()
    assert "http" not in graph["engine"] and "engine" not in graph["http"]
    assert [room for room, imports in graph.items() if "worker" in imports] == ["cli"]
    assert not graph["processing"] & {"engine", "http", "worker", "cli"}
    below = ("alerts", "scoring", "windows", "rules", "ingest", "schemas", "access", "sinks")
    for room in below:
        assert not graph[room] & {"processing", "engine", "http", "worker", "cli"}, room
