"""No import cycle among the alignment modules (issue 11): reward, gdpo/*, embed, encoder, train/*, tracking, fs.

Every import counts, also those inside functions (a lazy import back is still a cycle for the
reader); imports under ``if TYPE_CHECKING:`` do not. ``from pkg import name`` is an edge to
``pkg.name`` when that is a module, else to ``pkg``.
"""

from __future__ import annotations

import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2] / "lgsid"
OWNED = ("lgsid.reward", "lgsid.gdpo", "lgsid.embed", "lgsid.encoder", "lgsid.train", "lgsid.tracking", "lgsid.fs")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def import_graph() -> dict[str, set[str]]:
    """``{module: modules of lgsid it imports}`` for every module under ``lgsid/``."""
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}

    def visit(node: ast.AST, mod: str, pkg: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for c in child.orelse:
                    visit(c, mod, pkg)
                continue
            if isinstance(child, ast.Import):
                for a in child.names:
                    if a.name in files:
                        graph[mod].add(a.name)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(pkg.split(".")[: len(pkg.split(".")) - child.level + 1] + ([base] if base else []))
                for a in child.names:
                    target = f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                    if target in files and target != mod:
                        graph[mod].add(target)
            visit(child, mod, pkg)

    for mod, path in files.items():
        pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        visit(ast.parse(path.read_text()), mod, pkg)
    return graph


def test_no_import_cycle_through_the_alignment_modules():
    import networkx as nx

    g = nx.DiGraph([(a, b) for a, bs in import_graph().items() for b in bs])
    owned = lambda m: any(m == o or m.startswith(o + ".") for o in OWNED)  # noqa: E731
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1 and any(owned(m) for m in c)]
    assert cycles == [], f"import cycles: {cycles}"


def test_the_graph_holds_lazy_imports_and_skips_type_checking_ones():
    g = import_graph()
    assert "lgsid.gdpo.loop" in g["lgsid.gdpo.step"]  # module level
    assert "lgsid.train.distributed" in g["lgsid.gdpo.loop"]  # inside a function
    assert "lgsid.reward" not in g["lgsid.gdpo.loop"]  # only under TYPE_CHECKING
    assert "lgsid.gdpo" not in g["lgsid.gdpo.loop"]  # submodules never import their package back
