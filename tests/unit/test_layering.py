"""Layering of ``lgsid/``: the domain modules know nothing of steps or of the model registry.

A step (``lgsid/steps/<step>.py``) reads the config, calls domain modules and writes tables, MLflow
runs and registry aliases. The domain modules (everything else but the CLI) must not import
``lgsid.steps`` (they would know which step calls them) nor ``lgsid.registry`` (logging a model
version, aliases and the promotion gate are step-level decisions). The import graph is the one
``test_import_cycles`` builds with ``ast``, function-level imports included.
"""

from __future__ import annotations

from test_import_cycles import import_graph

ENTRY_POINTS = {"lgsid.cli"}


def _is_step(module: str) -> bool:
    return module == "lgsid.steps" or module.startswith("lgsid.steps.")


def layering_violations(g) -> list[str]:
    """``"a -> b (file:line)"`` for every domain module ``a`` that imports a step module or the registry."""
    out = []
    for a, b, where in sorted(g.edges(data="where")):
        if _is_step(a) or a in ENTRY_POINTS:
            continue
        if _is_step(b) or b == "lgsid.registry":
            out.append(f"{a} -> {b} ({where})")
    return out


def test_every_step_lives_in_lgsid_steps():
    from lgsid.steps import STEPS

    assert {target.split(":")[0].rpartition(".")[0] for target, _ in STEPS.values()} == {"lgsid.steps"}


def test_the_rule_catches_a_domain_module_that_imports_a_step():
    import networkx as nx

    g = nx.DiGraph()
    g.add_edge("lgsid.embed", "lgsid.steps.summary", where="lgsid/embed.py:3")
    g.add_edge("lgsid.tokenizer.job", "lgsid.registry", where="lgsid/tokenizer/job.py:9")
    g.add_edge("lgsid.steps.tokenize_sids", "lgsid.registry", where="lgsid/steps/tokenize_sids.py:5")
    g.add_edge("lgsid.cli", "lgsid.steps", where="lgsid/cli.py:19")
    assert layering_violations(g) == [
        "lgsid.embed -> lgsid.steps.summary (lgsid/embed.py:3)",
        "lgsid.tokenizer.job -> lgsid.registry (lgsid/tokenizer/job.py:9)",
    ]


def test_domain_modules_import_no_step_and_no_registry():
    bad = layering_violations(import_graph())
    assert not bad, "domain modules that import a step or the registry:\n" + "\n".join(bad)
