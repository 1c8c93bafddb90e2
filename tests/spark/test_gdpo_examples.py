"""G-DPO examples (D_mix) built from gdpo_pairs, geo_prompts and, for geo_near, the negatives table: hand-built rows."""

import pytest

from lgsid.gdpo import EXAMPLE_COLUMNS, build_examples

pytestmark = pytest.mark.spark

PROMPTS = [  # item_id, content_text, location_text, prompt
    ("a", "Bar", "in D1", "Bar; in D1"),
    ("b", "Cafe", "in D2", "Cafe; in D2"),
    ("c", "Gym", "in D9", "Gym; in D9"),
    ("d", "Pub", "in D1", "Pub; in D1"),
]
PAIRS = [  # anchor, other, pair_type
    ("a", "c", "geo_constrained"),
    ("a", "b", "co_click"),
]
NEGATIVES = [  # item_id, rank, cand_item_id, cand_location_text, neg_kind
    ("a", 1, "d", "in D1", "near"),  # same location text as the anchor: no example
    ("a", 2, "b", "in D2", "near"),
    ("a", 3, "b", "in D3", "near"),  # rank 3 > near_per_anchor=2: left out
    ("a", 4, "c", "in D9", "far"),
    ("b", 1, "c", "in D9", "far"),   # a far candidate is never a geo_near example
]


def _frames(spark):
    prompts = spark.createDataFrame(PROMPTS, "item_id string, content_text string, location_text string, prompt string")
    pairs = spark.createDataFrame(PAIRS, "anchor_item_id string, other_item_id string, pair_type string")
    neg = spark.createDataFrame(NEGATIVES, "item_id string, rank int, cand_item_id string, cand_location_text string, neg_kind string")
    return prompts, pairs, neg


def _rows(df):
    return sorted(tuple(r) for r in df.select(*EXAMPLE_COLUMNS).collect())


def test_near_examples_reject_the_nearest_other_district(spark):
    prompts, pairs, neg = _frames(spark)
    got = _rows(build_examples(pairs, prompts, use_domain_pairs=True, seed=0, negatives=neg, near_per_anchor=2))
    assert got == sorted([
        ("a", "c", "geo_constrained", "Bar", "in D1", "in D9", "Bar; in D1"),
        ("a", "b", "co_click", "Bar", "in D2", "in D9", "Bar; in D1"),
        ("a", "b", "geo_near", "Bar", "in D1", "in D2", "Bar; in D1"),
    ])


def test_without_near_pairs_d_mix_is_the_papers(spark):
    prompts, pairs, neg = _frames(spark)
    plain = _rows(build_examples(pairs, prompts, use_domain_pairs=True, seed=0))
    assert plain == _rows(build_examples(pairs, prompts, use_domain_pairs=True, seed=0, negatives=neg, near_per_anchor=0))
    assert {r[2] for r in plain} == {"geo_constrained", "co_click"}
    gc_only = _rows(build_examples(pairs, prompts, use_domain_pairs=False, seed=0, negatives=neg, near_per_anchor=1))
    # rank 1 is the same district as the anchor, so near_per_anchor=1 adds nothing here
    assert gc_only == [("a", "c", "geo_constrained", "Bar", "in D1", "in D9", "Bar; in D1")]


def test_near_pairs_need_the_negatives_table(spark):
    prompts, pairs, _ = _frames(spark)
    with pytest.raises(ValueError, match="negatives"):
        build_examples(pairs, prompts, negatives=None, near_per_anchor=2)
