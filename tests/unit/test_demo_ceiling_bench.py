"""bench/demo_ceiling.py on a small demo: the generator's own ranking bounds every row from above."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_generator_ranking_is_the_ceiling(bench_module):
    out = bench_module("demo_ceiling").ceiling(os.path.join(ROOT, "conf", "local.yaml"),
                      ["demo.n_items=600", "demo.n_users=300", "demo.n_interactions=4000", "demo.n_towns=60"], 10)
    rows = {r["row"]: r for r in out["rows"]}
    assert out["test_users"] > 200 and 0.0 < out["revisit_share"] < 1.0
    assert rows["history + nearby popularity"]["ratio_to_best_baseline"] == 1.0
    # the true P(i|u) ranks the next visit better than any estimate of it and than both baselines
    top = rows["generator P(i|u)"]["Hit@10"]
    assert all(top >= r["Hit@10"] for name, r in rows.items() if name != "generator P(i|u)")
    assert top > rows["history + nearby popularity"]["Hit@10"] > rows["user-history frequency"]["Hit@10"]
    # user-history frequency can only hit revisits
    assert rows["user-history frequency"]["new.Hit@10"] < 0.1
