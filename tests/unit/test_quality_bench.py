"""bench/quality.py's target checks on a hand-built metrics.json."""

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _quality():
    spec = importlib.util.spec_from_file_location("bench_quality", os.path.join(ROOT, "bench", "quality.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _s(mean, std=0.0):
    return {"mean": mean, "std": std, "runs": [mean]}


def test_quality_targets_hand_computed():
    m = {
        "meta": {"seeds": [0, 1, 2]},
        "generative": {"variants": {
            "history": {"kind": "baseline", "summary": {"Hit@10": _s(0.30), "NDCG@10": _s(0.20)}},
            "popularity": {"kind": "baseline", "summary": {"Hit@10": _s(0.10), "NDCG@10": _s(0.25)}},
            "rqkmeans": {"kind": "sid", "variant": "rqkmeans", "summary": {"Hit@10": _s(0.20, 0.01), "NDCG@10": _s(0.1)}},
            "lgsid": {"kind": "sid", "variant": "lgsid", "summary": {"Hit@10": _s(0.25, 0.02), "NDCG@10": _s(0.1)}},
            "lgsid+reach": {"kind": "sid", "variant": "lgsid", "summary": {"Hit@10": _s(0.36), "NDCG@10": _s(0.26)}},
        }},
        "discriminative": {"variants": {"rqkmeans": {"summary": {"AUC": _s(0.80, 0.01)}}, "lgsid": {"summary": {"AUC": _s(0.805, 0.01)}}}},
        "geo": {"rows": {"reference": {"within_1km@10": 0.1}, "aligned-2": {"within_1km@10": 0.15}, "aligned-10": {"within_1km@10": 0.12},
                         "geo-oracle": {"within_1km@10": 0.9}}},
    }
    rows = {r["name"]: r for r in _quality().check(m, "demo")}
    hit = rows["demo.tiger_hit10_vs_best_baseline"]
    assert hit["value"] == pytest.approx(0.36 / 0.30) and hit["pass"] is True  # 1.2x
    ndcg = rows["demo.tiger_ndcg10_vs_best_baseline"]
    assert ndcg["value"] == pytest.approx(0.26 / 0.25) and ndcg["pass"] is False  # the best baseline per metric: popularity
    assert rows["demo.lgsid_tiger_hit10_beats_tokenizers"]["value"] == pytest.approx(0.25 - 0.20 - 0.02)
    assert rows["demo.lgsid_din_auc_beats_tokenizers"]["pass"] is False  # 0.005 < one std
    assert rows["demo.aligned_within_1km_gain"]["value"] == pytest.approx(0.02)  # the newest aligned version (10), not 2
    assert rows["demo.seeds_ge_3"]["pass"] is True
