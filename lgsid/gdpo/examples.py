"""G-DPO training examples: ``gdpo_pairs`` × ``geo_prompts`` -> (content, chosen, rejected, true prompt) rows,
and the collate step that tokenises them.

Every example is an anchor item a with a *chosen* and a *rejected* prompt, both built from a's
content (``combine_prompt(content_a, location)``):

* ``geo_constrained`` pair (a, b): chosen = a's own location, rejected = b's (far) location.
* ``co_click`` pair (a, b): chosen = b's location (the co-clicked item's), rejected = the location
  of one of a's geo-constrained far items (picked by a seeded hash). Anchors without a far item
  contribute no co-click examples.
* ``geo_near`` (``gdpo.near_pairs_per_anchor`` > 0; our departure): chosen = a's own location,
  rejected = the location of one of a's ``n`` nearest mismatched candidates in ``negatives``
  (ranks 1..n, kind ``near``; Eq. 1's distance-ranked, density-aware negatives). Geo-constrained
  partners lie outside a's region (another town or county, ~16 km away on Phoenix), so nothing
  else in D_mix asks the encoder to tell a's district from the one next to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from lgsid.config import LGSIDConfig
from lgsid.errors import ValidationError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession


EXAMPLE_COLUMNS = ["anchor_item_id", "other_item_id", "pair_type", "content_text", "chosen_location", "rejected_location", "true_prompt"]


def build_examples(pairs: "DataFrame", prompts: "DataFrame", use_domain_pairs: bool = True, seed: int = 0,
                   negatives: "DataFrame | None" = None, near_per_anchor: int = 0) -> "DataFrame":
    """gdpo_pairs × geo_prompts (× negatives) -> G-DPO examples (pure DataFrame transform).

    Args:
        pairs: ``gdpo_pairs`` rows (anchor_item_id, other_item_id, pair_type, ...).
        prompts: ``geo_prompts`` rows (item_id, content_text, location_text, prompt).
        use_domain_pairs: keep co-click pairs (D_dc); ``False`` = D_gc only (ablation).
        seed: seed of the hash that picks a co-click example's far (rejected) item.
        negatives: ``negatives`` rows (item_id, rank, cand_item_id, cand_location_text, neg_kind);
            read only when ``near_per_anchor`` > 0.
        near_per_anchor: ``geo_near`` examples per anchor: its nearest ``near`` candidates of rank
            <= this, whose location text differs from the anchor's.

    Returns:
        Columns :data:`EXAMPLE_COLUMNS`, ordered by (anchor, other, pair_type).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    P = prompts.select("item_id", "content_text", "location_text", "prompt")
    A = P.select(F.col("item_id").alias("anchor_item_id"), "content_text", F.col("location_text").alias("anchor_location"), F.col("prompt").alias("true_prompt"))
    O = P.select(F.col("item_id").alias("other_item_id"), F.col("location_text").alias("other_location"))
    pr = pairs.select("anchor_item_id", "other_item_id", "pair_type")
    geo = pr.where(F.col("pair_type") == "geo_constrained").join(A, "anchor_item_id").join(O, "other_item_id")
    geo_ex = geo.select(
        "anchor_item_id", "other_item_id", "pair_type", "content_text",
        F.col("anchor_location").alias("chosen_location"), F.col("other_location").alias("rejected_location"), "true_prompt",
    )
    if near_per_anchor > 0:
        if negatives is None:
            raise ValueError("build_examples: near_per_anchor > 0 needs the negatives table")
        near = (negatives.where((F.col("rank") <= near_per_anchor) & (F.col("neg_kind") == "near"))
                .select(F.col("item_id").alias("anchor_item_id"), F.col("cand_item_id").alias("other_item_id"),
                        F.col("cand_location_text").alias("rejected_location"))
                .join(A, "anchor_item_id").where(F.col("rejected_location") != F.col("anchor_location")))
        geo_ex = geo_ex.unionByName(near.select(
            "anchor_item_id", "other_item_id", F.lit("geo_near").alias("pair_type"), "content_text",
            F.col("anchor_location").alias("chosen_location"), "rejected_location", "true_prompt",
        ))
    if not use_domain_pairs:
        return geo_ex.orderBy("anchor_item_id", "other_item_id", "pair_type")
    far = geo.select("anchor_item_id", F.col("other_item_id").alias("far_item_id"), F.col("other_location").alias("rejected_location"))
    co = pr.where(F.col("pair_type") == "co_click").join(A, "anchor_item_id").join(O, "other_item_id").join(far, "anchor_item_id")
    w = Window.partitionBy("anchor_item_id", "other_item_id").orderBy(F.xxhash64("other_item_id", "far_item_id", F.lit(seed)), "far_item_id")
    co = co.withColumn("_k", F.row_number().over(w)).where(F.col("_k") == 1)
    co_ex = co.select(
        "anchor_item_id", "other_item_id", "pair_type", "content_text",
        F.col("other_location").alias("chosen_location"), "rejected_location", "true_prompt",
    )
    return geo_ex.unionByName(co_ex).orderBy("anchor_item_id", "other_item_id", "pair_type")


def load_examples(spark: "SparkSession", cfg: LGSIDConfig) -> tuple["DataFrame", int, dict]:
    """The examples DataFrame, its row count and counts per pair type; empty input is a ValidationError."""
    from lgsid.storage import DeltaStore

    store = DeltaStore(spark, cfg.storage)
    pairs = store.read("gdpo_pairs")
    prompts = store.read("geo_prompts")
    n_near = cfg.gdpo.near_pairs_per_anchor
    negatives = store.read("negatives") if n_near > 0 else None
    ex = build_examples(pairs, prompts, cfg.gdpo.use_domain_pairs, cfg.gdpo.seed, negatives, n_near)
    counts = {r["pair_type"]: int(r["count"]) for r in ex.groupBy("pair_type").count().collect()}
    n = sum(counts.values())
    if n == 0:
        n_pairs = pairs.count()
        raise ValidationError(
            f"gdpo: no training examples: gdpo_pairs has {n_pairs} rows"
            + (" (empty; run `lgsid pairs` first)" if n_pairs == 0 else " but none has a geo_constrained partner with a prompt in geo_prompts")
        )
    return ex, n, counts


def make_collate(tokenizer, max_length: int, prompts_cfg) -> Callable[[list[dict]], dict]:
    """Collate rows of the examples table into one tokenised batch.

    Each row has ``content_text``, ``chosen_location``, ``rejected_location`` and ``true_prompt``
    (and the key columns ``anchor_item_id``, ``other_item_id``, ``pair_type``). The chosen /
    rejected prompts are ``combine_prompt(content, location)``. All 3B texts are tokenised together
    (one padding length) in the order chosen, rejected, true.

    Returns:
        ``fn(rows) -> {"input_ids": (3B, T), "attention_mask": (3B, T), ..., "n": B, "keys": [B
        (anchor, other, pair_type) tuples]}``.
    """
    from lgsid.prompts import combine_prompt as combine

    def collate(rows: list[dict]) -> dict:
        chosen = [combine(r["content_text"], r["chosen_location"], prompts_cfg) for r in rows]
        rejected = [combine(r["content_text"], r["rejected_location"], prompts_cfg) for r in rows]
        true = [r["true_prompt"] for r in rows]
        tok = tokenizer(chosen + rejected + true, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        out = dict(tok)
        out["n"] = len(rows)
        out["keys"] = [(r.get("anchor_item_id"), r.get("other_item_id"), r.get("pair_type")) for r in rows]
        return out

    return collate
