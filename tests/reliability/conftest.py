"""Reliability suite: every test is one case (one row of the table printed at the end of the run).

A case declares its expected behaviour with the ``case`` fixture and reports what it measured:

    def test_x(case):
        case.expect("strict: one-line error naming file, line and column; nothing written")
        ...
        case.rows_lost(input_rows - accepted - rejected)   # 0 when every input row is accounted for
        case.corrupted_versions(n)                          # table versions that do not read back

The terminal summary prints the table (case, expected behaviour, result) and the line
``N cases, N passed, rows lost X, corrupted versions Y``. ``rows lost`` and ``corrupted versions``
sum what the cases measured (a case that measures nothing adds 0).
"""

from __future__ import annotations

import pytest

_ROWS: list[dict] = []


class Case:
    """What one reliability case expects and measured; stored on the test item."""

    def __init__(self, node):
        self.node = node

    def expect(self, text: str) -> None:
        self.node.user_properties.append(("expected", text))

    def rows_lost(self, n: int) -> None:
        self.node.user_properties.append(("rows_lost", int(n)))

    def corrupted_versions(self, n: int) -> None:
        self.node.user_properties.append(("corrupted_versions", int(n)))


@pytest.fixture
def case(request) -> Case:
    return Case(request.node)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if "tests/reliability/" not in item.nodeid.replace("\\", "/"):
        return
    failed_setup = rep.when == "setup" and not rep.passed
    if rep.when == "call" or failed_setup or (rep.when == "setup" and rep.skipped):
        props = dict(p for p in item.user_properties if p[0] == "expected")
        if rep.skipped:
            result = "xfail" if hasattr(rep, "wasxfail") else "skipped"
        elif rep.passed:
            result = "XPASS" if hasattr(rep, "wasxfail") else "passed"
        else:
            result = "FAILED"
        _ROWS.append({
            "case": item.name.removeprefix("test_"),
            "expected": props.get("expected", item.function.__doc__.strip().splitlines()[0] if item.function.__doc__ else ""),
            "result": result,
            "rows_lost": sum(v for k, v in item.user_properties if k == "rows_lost"),
            "corrupted": sum(v for k, v in item.user_properties if k == "corrupted_versions"),
        })


def pytest_terminal_summary(terminalreporter):
    if not _ROWS:
        return
    tr = terminalreporter
    w_case = max(len(r["case"]) for r in _ROWS)
    w_exp = min(90, max(len(r["expected"]) for r in _ROWS))
    tr.section("reliability cases")
    tr.write_line(f"{'case':<{w_case}}  {'expected behaviour':<{w_exp}}  result")
    for r in _ROWS:
        exp = r["expected"] if len(r["expected"]) <= w_exp else r["expected"][: w_exp - 1] + "…"
        tr.write_line(f"{r['case']:<{w_case}}  {exp:<{w_exp}}  {r['result']}")
    n = len(_ROWS)
    passed = sum(r["result"] == "passed" for r in _ROWS)
    xfail = sum(r["result"] == "xfail" for r in _ROWS)
    lost = sum(r["rows_lost"] for r in _ROWS)
    bad = sum(r["corrupted"] for r in _ROWS)
    extra = f" ({xfail} xfail)" if xfail else ""
    tr.write_line(f"{n} cases, {passed} passed{extra}, rows lost {lost}, corrupted versions {bad}")
