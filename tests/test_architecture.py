"""The house rules of the layout, checked on the source itself: arrows point down, no circles.

Every `import` in `src/voice_call` (runtime, lazy and TYPE_CHECKING alike: a type-only arrow up is
still a dependency a reader must follow) is read with `ast`, without importing anything. A
module may import anything on a lower floor and its own package's modules on its own floor; a new
circle or an arrow up fails here with the modules that make it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Floors, lowest first. The longest matching prefix decides a module's floor. The agent package
# has two floors: its engine (responders, prompt, memory) serves the manager, its faces (the agent
# tool, the MCP server) stand beside the CLI and talk to a running server.
FLOORS: dict[str, int] = {
    "voice_call.errors": 0,
    "voice_call.clock": 0,
    "voice_call.models": 0,
    "voice_call.languages": 0,
    "voice_call.audio": 0,
    "voice_call.asgi_server": 0,
    "voice_call.config": 1,
    "voice_call.security": 2,
    "voice_call.store": 2,
    "voice_call.speech": 2,
    "voice_call.numbers": 2,
    "voice_call.client": 3,
    "voice_call.tunnel": 3,
    "voice_call.sim": 3,
    "voice_call.media": 4,
    "voice_call.realtime": 5,
    "voice_call.realtime.model": 2,  # the model protocol: media's registry pre-warms models
    "voice_call.realtime.control": 7,  # the bridge's CallControl, over the manager
    "voice_call.providers": 5,
    "voice_call.agent": 5,
    "voice_call.manager": 6,
    "voice_call.commands": 7,
    # scale-out: membership, ownership and the channel stand on the Redis client alone (media
    # records who holds a stream); remote streams and the feed stand on the manager; the router
    # and the sweep drive the commands
    "voice_call.cluster": 3,
    "voice_call.cluster.streams": 7,
    "voice_call.cluster.feed": 7,
    "voice_call.cluster.router": 8,
    "voice_call.cluster.adoption": 8,
    "voice_call.runtime": 9,
    "voice_call.server": 10,
    "voice_call.agent.tool": 11,
    "voice_call.agent.mcp_server": 11,
    "voice_call.cli": 12,
}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / "voice_call").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] in ("__init__", "__main__"):
            if parts[-1] == "__main__":
                continue
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported(module: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """Our modules that `module` imports (a name imported from a package counts as its module)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in known:
                    yield full
                elif node.module in known:
                    yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: set(imported(m, p, known)) - {m} for m, p in known.items()}


def floor(module: str) -> int | None:
    best = max(
        (p for p in FLOORS if module == p or module.startswith(p + ".")), key=len, default=None
    )
    return None if best is None else FLOORS[best]


def package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_every_module_has_a_floor() -> None:
    unplaced = [m for m in modules() if m != "voice_call" and floor(m) is None]
    assert unplaced == [], f"give these a floor in FLOORS: {unplaced}"


def test_no_import_circles() -> None:
    assert circles(graph()) == []


def test_arrows_point_down() -> None:
    up = []
    for module, targets in graph().items():
        if module == "voice_call":  # the root package lazily re-exports the public Client
            continue
        for target in targets:
            here, there = floor(module), floor(target)
            if here is None or there is None or there < here:
                continue
            if there > here or package(module) != package(target):
                up.append(f"{module} (floor {here}) -> {target} (floor {there})")
    assert up == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
