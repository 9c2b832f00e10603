"""The package layering of src/pyrestate, read from the import statements (function-level imports too).

Units are the top-level packages (protocol, sdk, cli, testing) and, inside the server, each sub-package or
top-level module (server.partition, server.core_api, ...). The server never imports the SDK, no two units
import each other (directly or through others), and the admin API, the console and the configuration use
shared modules rather than the ingress's own.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pyrestate

SRC = Path(pyrestate.__file__).parent
ROOT = "pyrestate"


def _module_name(path: Path) -> tuple[str, bool]:
    parts = (ROOT, *path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def _imports(path: Path) -> Iterator[str]:
    """Absolute names of the pyrestate modules `path` imports; `from pkg import mod` names pkg.mod."""
    module, is_package = _module_name(path)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == ROOT)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != ROOT:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield sub if _exists(sub) else target


def unit_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) >= 3 and parts[1] == "server":
        return ".".join(parts[:3])
    return ".".join(parts[:2])


def unit_graph() -> dict[str, dict[str, set[str]]]:
    """unit -> imported unit -> the modules that import it (for the failure message)."""
    graph: dict[str, dict[str, set[str]]] = {}
    for path in sorted(SRC.rglob("*.py")):
        module, _ = _module_name(path)
        src = unit_of(module)
        for target in _imports(path):
            dst = unit_of(target)
            if dst not in (src, ROOT, f"{ROOT}.server"):
                graph.setdefault(src, {}).setdefault(dst, set()).add(module)
    return graph


def _cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """The strongly connected components with more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _edges_into(graph: dict[str, dict[str, set[str]]], sources: tuple[str, ...], target: str) -> list[str]:
    return sorted(
        f"{module} -> {dst}"
        for src, targets in graph.items()
        if src.startswith(sources)
        for dst, modules in targets.items()
        if dst.startswith(target)
        for module in modules
    )


def test_the_graph_sees_the_known_layers() -> None:
    graph = unit_graph()
    assert "pyrestate.protocol" in graph["pyrestate.sdk"]
    assert "pyrestate.server.partition" in graph["pyrestate.server.engine"]
    assert "pyrestate.server.storage" in graph["pyrestate.server.partition"]


def test_no_import_cycles_between_units() -> None:
    assert _cycles(unit_graph()) == []


def test_the_server_does_not_import_the_sdk() -> None:
    assert _edges_into(unit_graph(), ("pyrestate.server",), "pyrestate.sdk") == []


def test_protocol_imports_nothing_else_of_pyrestate() -> None:
    assert unit_graph().get("pyrestate.protocol", {}) == {}


def test_admin_console_and_config_leave_the_ingress_internals_alone() -> None:
    sources = ("pyrestate.server.admin", "pyrestate.server.console", "pyrestate.server.config")
    assert _edges_into(unit_graph(), sources, "pyrestate.server.ingress") == []


def test_partition_and_invoker_query_and_engine_one_way() -> None:
    graph = unit_graph()
    assert "pyrestate.server.invoker" not in graph.get("pyrestate.server.partition", {})
    assert "pyrestate.server.engine" not in graph.get("pyrestate.server.query", {})
