"""No import cycle in ``lgsid/``: every ``import`` of our own modules, at module level or inside a
function, read with ``ast`` (imports under ``if TYPE_CHECKING:`` do not run and do not count).

An edge ``a -> b`` means module ``a`` imports ``b``: ``import lgsid.b`` and ``from lgsid import b``
(``b`` a module) name ``lgsid.b``; ``from lgsid.b import name`` names ``lgsid.b`` (its
``__init__`` when ``b`` is a package); relative imports are resolved against ``a``'s package. The
implicit import of a module's parent packages is not an edge (it would make every package whose
``__init__`` re-exports its submodules a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[2] / "lgsid"


def module_name(path: Path) -> str:
    """``lgsid/tokenizer/job.py`` -> ``lgsid.tokenizer.job``; ``lgsid/x/__init__.py`` -> ``lgsid.x``."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every Import / ImportFrom node, skipping the bodies of ``if TYPE_CHECKING:`` (their ``else`` counts)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(path: Path, modules: set[str]) -> dict[str, int]:
    """Our modules that ``path`` imports -> line of the first such import."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: dict[str, int] = {}
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                targets.append(sub if sub in modules else base)
        for t in targets:
            if t in modules and t != name:
                out[t] = min(out.get(t, node.lineno), node.lineno)
    return out


def import_graph() -> nx.DiGraph:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(f) for f in files}
    g = nx.DiGraph()
    g.add_nodes_from(modules)
    for f in files:
        for target, line in imports_of(f, modules).items():
            g.add_edge(module_name(f), target, where=f"{f.relative_to(PACKAGE.parent)}:{line}")
    return g


def describe_cycles(g: nx.DiGraph) -> list[str]:
    """One line per strongly connected component: its modules and one cycle with the import lines."""
    out = []
    for scc in sorted((sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1), key=lambda c: c[0]):
        cycle = nx.find_cycle(g.subgraph(scc), source=scc[0])
        path = " -> ".join(f"{a} ({g.edges[a, b]['where']})" for a, b in cycle) + f" -> {cycle[0][0]}"
        out.append(f"{len(scc)} modules {{{', '.join(scc)}}}; e.g. {path}")
    return out


def test_the_graph_reads_known_imports():
    """The parser sees module-level, function-level and relative imports and skips TYPE_CHECKING."""
    g = import_graph()
    assert g.has_edge("lgsid.spark.session", "lgsid.config")
    assert g.has_edge("lgsid.spark", "lgsid.spark.session")
    assert g.number_of_edges() > len(g) // 2


def test_parser_rules(tmp_path, monkeypatch):
    pkg = tmp_path / "lgsid"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from lgsid import b\nelse:\n    import lgsid.c\n"
        "def f():\n    from .sub import d\n    from lgsid.sub.d import x\n"
    )
    (pkg / "b.py").write_text("from lgsid.a import f\n")
    (pkg / "c.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import d\n")
    (pkg / "sub" / "d.py").write_text("from ..b import f\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", pkg)
    g = import_graph()
    assert set(g.successors("lgsid.a")) == {"lgsid.c", "lgsid.sub.d"}
    assert set(g.successors("lgsid.sub")) == {"lgsid.sub.d"}
    assert describe_cycles(g) == [
        "3 modules {lgsid.a, lgsid.b, lgsid.sub.d}; e.g. lgsid.a (lgsid/a.py:7) -> lgsid.sub.d (lgsid/sub/d.py:1) -> lgsid.b (lgsid/b.py:1) -> lgsid.a"
    ]


def test_no_import_cycles():
    cycles = describe_cycles(import_graph())
    assert not cycles, "import cycles in lgsid/:\n" + "\n".join(cycles)
