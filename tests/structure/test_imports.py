"""The import structure: no cycle among our modules, and `stubs/` and `sandbox/` stay pure.

Every import counts, including those under `if TYPE_CHECKING:`: a cycle there is still a knot a
reader has to untie.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mcp_gateway", "stubs", "sandbox")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ours that `name` imports (a `from pkg import sub` counts as importing `pkg.sub`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            targets.add(source)
            targets.update(f"{source}.{alias.name}" for alias in node.names)
    return {t for t in targets if t in modules and t != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle() -> None:
    assert _cycles(_graph()) == []


def test_stubs_and_sandbox_import_neither_the_gateway_nor_each_other() -> None:
    wrong = [(name, target) for name, targets in _graph().items() for target in targets
             if name.split(".")[0] != target.split(".")[0] and name.split(".")[0] in ("stubs", "sandbox")]
    assert wrong == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_relative_and_type_checking_imports() -> None:
    graph = _graph()
    assert "mcp_gateway.config" in graph["mcp_gateway.upstream"]
    assert "mcp_gateway.gateway" in graph["mcp_gateway.server.handlers"]
    assert "mcp_gateway.governance.identity" in graph["mcp_gateway.governance.keys"]


def test_the_gateway_uses_stubs_and_sandbox_through_their_packages() -> None:
    """`stubs/__init__` and `sandbox/__init__` are their public API: the gateway imports nothing deeper."""
    deep = [(name, target) for name, targets in _graph().items() if name.startswith("mcp_gateway")
            for target in targets if target.split(".")[0] in ("stubs", "sandbox") and "." in target]
    assert deep == []
