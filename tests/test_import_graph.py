"""The import graph of ``src/hamner`` runs one way: no cycles, and ``models/`` never imports ``inference/``.

Built with ``ast`` from the source files, so it sees every import a module can make: top-level ones, and the
lazy ones inside functions (a lazy import still ties the two modules together; it only hides the cycle
from the interpreter; an import under ``if TYPE_CHECKING:`` would count too). Importing ``hamner.a.b``
also runs the package ``hamner.a`` (its ``__init__``), so that is an edge too, except from a module
inside ``hamner.a``: Python has imported a module's own packages before its first line, so only
importing one by name (``from hamner.inference import DEFAULT_MAX_WORDS``) is an edge to it.

The tree checked is the one ``hamner`` is imported from, or ``HAMNER_IMPORT_GRAPH_SRC`` when set (a
``src/hamner`` directory), which lets this test be pointed at an older checkout.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import hamner

LAYER_RULES = (
    # (importer prefix, forbidden prefix, why)
    ("hamner.models", "hamner.inference", "models/ is below inference/: a model never reaches up into a backend"),
    ("hamner.models", "hamner.training", "models/ never imports training/"),
    ("hamner.models", "hamner.serve", "models/ never imports serve/"),
    ("hamner.models", "hamner.cli", "models/ never imports the CLI"),
    *(
        ("hamner.data", upper, "data/ is the bottom layer: readers and tokenisation import no model, loop or backend")
        for upper in ("hamner.models", "hamner.training", "hamner.inference", "hamner.serve", "hamner.bulk", "hamner.cli")
    ),
)


def _package_root() -> Path:
    override = os.environ.get("HAMNER_IMPORT_GRAPH_SRC")
    if override:
        return Path(override)
    return Path(hamner.__file__).parent


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(root: Path) -> dict[str, Path]:
    return {_module_name(root, path): path for path in sorted(root.rglob("*.py"))}


def _resolve(name: str, importer: str, known: dict[str, Path]) -> set[str]:
    """The hamner modules that importing ``name`` from ``importer`` can run: ``name`` itself, if it is a
    module or package, and every package above it except the importer's own packages. Those Python has
    imported before the importer's first line, so reaching them through a deeper import is not a
    dependency; importing one by name (``from hamner.inference import DEFAULT_MAX_WORDS``) still is."""
    own = {importer.rsplit(".", depth)[0] for depth in range(1, importer.count(".") + 1)}
    if _is_package(importer, known):
        own.add(importer)
    found: set[str] = {name} if name in known else set()
    parts = name.split(".")
    for end in range(1, len(parts)):
        candidate = ".".join(parts[:end])
        if candidate in known and candidate not in own:
            found.add(candidate)
    return found


def _is_package(module: str, known: dict[str, Path]) -> bool:
    return known[module].name == "__init__.py"


def _imports(module: str, path: Path, known: dict[str, Path]) -> dict[str, int]:
    """Every hamner module ``module`` imports, anywhere in its file, with the first line that does."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    edges: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        for hit in _resolve(target, module, known):
            if hit != module:
                edges.setdefault(hit, line)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts)
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            add(source, node.lineno)
            # ``from hamner.models import tagger`` imports the submodule hamner.models.tagger.
            for alias in node.names:
                add(f"{source}.{alias.name}", node.lineno)
    return edges


def build_graph(root: Path) -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    known = _modules(root)
    return {module: _imports(module, path, known) for module, path in known.items()}, known


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop(0)
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return [_one_cycle(graph, set(component)) for component in components]


def _one_cycle(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    """A concrete cycle inside a strongly connected component, as a path that returns to its start."""
    start = min(component)
    # Breadth-first from start back to start, staying in the component: the shortest cycle through it.
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node]):
                if nxt not in component:
                    continue
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if nxt not in previous:
                    previous[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")


def _describe(cycle: list[str], graph: dict[str, dict[str, int]], known: dict[str, Path]) -> str:
    steps = [f"{a} ({_where(a, known)}:{graph[a][b]}) -> {b}" for a, b in zip(cycle, cycle[1:], strict=False)]
    return "  cycle: " + " -> ".join(cycle) + "\n    " + "\n    ".join(steps)


def _where(module: str, known: dict[str, Path]) -> str:
    return known[module].relative_to(known["hamner"].parent.parent).as_posix()


def test_package_has_no_import_cycle() -> None:
    graph, known = build_graph(_package_root())
    cycles = find_cycles(graph)
    assert not cycles, "import cycles in src/hamner (each line: importer (file:line) -> imported):\n" + "\n".join(
        _describe(cycle, graph, known) for cycle in cycles
    )


def test_layers_import_downwards_only() -> None:
    graph, known = build_graph(_package_root())
    broken = [
        f"{module} ({_where(module, known)}:{line}) imports {target}: {why}"
        for module, targets in sorted(graph.items())
        for target, line in sorted(targets.items())
        for importer, forbidden, why in LAYER_RULES
        if (module == importer or module.startswith(importer + "."))
        and (target == forbidden or target.startswith(forbidden + "."))
    ]
    assert not broken, "imports that go up a layer:\n  " + "\n  ".join(broken)


def test_graph_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The checker itself: an import inside a function and a relative import are both edges."""
    package = tmp_path / "hamner"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models" / "__init__.py").write_text("")
    (package / "models" / "a.py").write_text("def f():\n    from hamner.models.b import g\n    return g\n")
    (package / "models" / "b.py").write_text("from . import a\n\ndef g():\n    return a\n")
    graph, _ = build_graph(package)
    assert "hamner.models.b" in graph["hamner.models.a"]
    assert "hamner.models.a" in graph["hamner.models.b"]
    assert find_cycles(graph) == [["hamner.models.a", "hamner.models.b", "hamner.models.a"]]
