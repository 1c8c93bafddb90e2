"""bench/quality.py's target checks on a hand-built metrics.json."""

import pytest


def _s(mean, std=0.0):
    return {"mean": mean, "std": std, "runs": [mean]}


def test_quality_targets_hand_computed(bench_module):
    m = {
        "meta": {"seeds": [0, 1, 2]},
        "generative": {"variants": {
            "popularity": {"kind": "baseline", "summary": {"Hit@10": _s(0.10), "new.Hit@10": _s(0.05)}},
            "history_nearby": {"kind": "baseline", "summary": {"Hit@10": _s(0.30), "new.Hit@10": _s(0.10)}},
            "rqkmeans": {"kind": "sid", "variant": "rqkmeans", "summary": {"Hit@10": _s(0.20, 0.01)}},
            "lgsid": {"kind": "sid", "variant": "lgsid", "summary": {"Hit@10": _s(0.25, 0.02)}},
            "lgsid+near": {"kind": "sid", "variant": "lgsid", "summary": {"Hit@10": _s(0.30), "new.Hit@10": _s(0.13)}},
        }},
        "ranker": {"variants": {
            "heuristic": {"summary": {"NDCG@10": _s(0.30)}},
            "ranker": {"summary": {"NDCG@10": _s(0.32, 0.004)}},
            "ranker+rqkmeans": {"summary": {"NDCG@10": _s(0.33, 0.005)}},
            "ranker+lgsid": {"summary": {"NDCG@10": _s(0.34, 0.002)}},
        }, "recall": {"history+nearby": 0.60, "per_variant": {"lgsid": {"union": 0.72}, "rqkmeans": {"union": 0.73}}}},
        "geo": {"rows": {"reference": {"within_1km@10": 0.1}, "aligned-2": {"within_1km@10": 0.2}, "aligned-10": {"within_1km@10": 0.16},
                         "geo-oracle": {"within_1km@10": 0.9}}},
    }
    rows = {r["name"]: r for r in bench_module("quality").check(m, "demo")}
    assert rows["demo.ranker_no_sids_ge_heuristic"]["value"] == pytest.approx(0.02) and rows["demo.ranker_no_sids_ge_heuristic"]["pass"]
    assert rows["demo.ranker_lgsid_beats_rqkmeans"]["value"] == pytest.approx(0.34 - 0.33 - 0.005) and rows["demo.ranker_lgsid_beats_rqkmeans"]["pass"]
    assert rows["demo.ranker_lgsid_beats_no_sids"]["value"] == pytest.approx(0.34 - 0.32 - 0.004)
    assert rows["demo.tiger_lgsid_beats_rqkmeans"]["value"] == pytest.approx(0.25 - 0.20 - 0.02)
    assert rows["demo.recall_lgsid_beam_gain"]["value"] == pytest.approx(0.12) and rows["demo.recall_lgsid_beam_gain"]["pass"]
    assert rows["demo.recall_lgsid_beam_vs_rqkmeans"]["pass"] is False  # 0.72 < 0.73
    assert rows["demo.new_place_hit10_vs_best_list"]["value"] == pytest.approx(1.3)  # vs history_nearby's 0.10, the best list
    assert rows["demo.aligned_within_1km_ratio"]["value"] == pytest.approx(1.6)  # the newest aligned version (10), not 2
    assert rows["demo.seeds_ge_3"]["pass"] is True


def test_quality_targets_missing_sections_are_unknown(bench_module):
    rows = bench_module("quality").check({"meta": {"seeds": [0]}}, "phoenix")
    assert all(r["pass"] is None for r in rows if not r["name"].endswith("seeds_ge_3"))
    assert {r["name"].split(".")[1] for r in rows} >= {"ranker_lgsid_beats_rqkmeans", "recall_lgsid_beam_gain", "aligned_within_1km_ratio"}
