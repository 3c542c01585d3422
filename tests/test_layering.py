"""The layering of DESIGN.md, read from the source: no module imports a floor above its own, and
no two modules import each other, directly or through others.

Floors: errors/config/registry (1) < kernels (2) < blocks/models/tasks (3) < lens/methods (4)
< spec (5) < train (6) < arena (7) < compress/claims (8) < report (9) < cli (10). A package's
``__init__`` has its folder's floor; ``layerlab/__init__.py`` is the facade above them all
(nothing inside imports it). Every import counts, including those inside functions, except
those under ``if TYPE_CHECKING:``, which never run.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "layerlab"
FLOORS = {
    "errors": 1, "config": 1, "registry": 1,
    "kernels": 2,
    "blocks": 3, "models": 3, "tasks": 3,
    "lens": 4, "methods": 4,
    "spec": 5,
    "train": 6,
    "arena": 7,
    "compress": 8, "claims": 8,
    "report": 9,
    "cli": 10,
}
FACADE_FLOOR = max(FLOORS.values()) + 1


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def floor_of(module: str) -> int:
    parts = module.split(".")
    if parts == [PACKAGE]:
        return FACADE_FLOOR
    top = parts[1]
    if top == "__main__":
        return FLOORS["cli"]
    if top not in FLOORS:
        raise AssertionError(f"module {module} has no floor: add {top!r} to FLOORS in tests/test_layering.py "
                             "and to the layering of DESIGN.md")
    return FLOORS[top]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (its ``else`` branch runs)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imports_of(path: Path, modules: set[str], root: Path = SRC) -> dict[str, int]:
    """The layerlab modules `path` imports at run time -> the line of the first such import.
    ``from X import Y`` imports the module ``X.Y`` when there is one, else the module ``X``."""
    me = module_name(path, root)
    package = me if is_package(path) else me.rpartition(".")[0]
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        if target in modules and target != me:
            found.setdefault(target, line)

    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in modules else base, node.lineno)
    return found


def graph(root: Path = SRC) -> tuple[dict[str, Path], dict[str, dict[str, int]]]:
    """(module -> its file relative to `root`, module -> {imported module: line})."""
    paths = {module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py"))}
    edges = {m: imports_of(p, set(paths), root) for m, p in paths.items()}
    return {m: p.relative_to(root) for m, p in paths.items()}, edges


def upward_imports(files: dict[str, Path], edges: dict[str, dict[str, int]]) -> list[str]:
    bad = []
    for m, targets in edges.items():
        for t, line in targets.items():
            if floor_of(t) > floor_of(m):
                bad.append(f"{files[m]}:{line}: {m} (floor {floor_of(m)}) imports {t} "
                           f"(floor {floor_of(t)})")
    return bad


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth is bounded by the ~100 modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


FILES, EDGES = graph()


def test_every_module_has_a_floor():
    assert len(FILES) > 50  # the walk found the package
    for m in FILES:
        floor_of(m)


def test_no_module_imports_a_floor_above_its_own():
    bad = upward_imports(FILES, EDGES)
    assert not bad, "upward imports (take it as an argument or find it by what it exposes):\n" + "\n".join(bad)


def test_no_import_cycle():
    found = cycles(EDGES)
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


# ---- the checker itself, on a small package written here -------------------------------------
def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / PACKAGE / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_checker_finds_upward_imports_and_cycles_and_exempts_type_checking(tmp_path):
    _write(tmp_path, {
        "__init__.py": "from . import registry, blocks\n",
        "registry.py": "def load():\n    from . import blocks\n",                 # 1 -> 3, inside a function
        "blocks/__init__.py": "from . import mlp\n",
        "blocks/mlp.py": "from ..registry import load\nfrom . import helper\n",  # blocks.helper is a name, not a module
        "spec.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .train import x\nelse:\n"
                   "    import layerlab.errors\n",
        "train/__init__.py": "from ..spec import y\n",
        "errors.py": "",
    })
    files, edges = graph(tmp_path)
    assert edges["layerlab.registry"] == {"layerlab.blocks": 2}
    assert set(edges["layerlab.blocks.mlp"]) == {"layerlab.registry", "layerlab.blocks"}
    assert set(edges["layerlab.spec"]) == {"layerlab.errors"}  # the TYPE_CHECKING import is exempt
    bad = upward_imports(files, edges)
    assert len(bad) == 1 and "layerlab.registry (floor 1) imports layerlab.blocks (floor 3)" in bad[0]
    assert cycles(edges) == [["layerlab.blocks", "layerlab.blocks.mlp", "layerlab.registry"]]


def test_a_module_outside_the_table_is_named(tmp_path):
    _write(tmp_path, {"__init__.py": "", "extras.py": ""})
    files, _ = graph(tmp_path)
    with pytest.raises(AssertionError, match="'extras'"):
        [floor_of(m) for m in files]
