"""bench/step_memory.py: the trajectory and the peak it reports from RSS samples."""

from __future__ import annotations

import sys


def test_summarise_hand_case(bench_module):
    sm = bench_module("step_memory")
    mb = 1 << 20
    samples = [(0.0, 100 * mb, ["a"]), (0.1, 110 * mb, ["a"]), (0.2, 140 * mb, ["b"]), (0.3, 90 * mb, ["c"]), (0.4, 139 * mb, ["d", "e"])]
    out = sm.summarise(samples, step_mb=30, top=2)
    assert out["peak_rss_mb"] == 140
    assert [r["rss_mb"] for r in out["trajectory"]] == [100, 140, 90, 139]  # 110 moved by < 30 MB from 100
    assert [(r["rss_mb"], r["at"]) for r in out["top"]] == [(140, "b"), (139, "d > e")]


def test_frames_of_keeps_lgsid_frames_only(bench_module):
    import os

    sm = bench_module("step_memory")
    ns: dict = {}
    exec(compile("def outer(g):\n    return g()\n", os.path.join(os.sep, "x", "lgsid", "fake.py"), "exec"), ns)  # a frame "in lgsid"
    assert ns["outer"](lambda: sm.frames_of(sys._getframe())) == ["fake.py:2:outer"]  # this test's own frames are left out
    assert sm.frames_of(None) == []
