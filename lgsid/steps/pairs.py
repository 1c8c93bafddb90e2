"""Step ``pairs``: ``items`` + ``interactions`` -> ``gdpo_pairs`` (D_mix, :mod:`lgsid.pairs`)."""

from __future__ import annotations

from lgsid.config import LGSIDConfig
from lgsid.pairs import build_pairs, history_cap_cuts
from lgsid.prompts import location_level
from lgsid.steps.summary import StepSummary


def run(spark, cfg: LGSIDConfig) -> StepSummary:
    """Step ``pairs``: read ``items`` and ``interactions``, write ``gdpo_pairs`` (one commit)."""

    from lgsid.storage import DeltaStore


    store = DeltaStore(spark, cfg.storage)
    items = store.read("items")
    level = location_level(items, cfg.prompts)
    df = build_pairs(items, store.read("interactions"), cfg.pairs, level).localCheckpoint(eager=True)
    res = store.write(df, "gdpo_pairs", mode="overwrite")
    counts = {r["pair_type"]: r["count"] for r in df.groupBy("pair_type").count().collect()}
    cuts = history_cap_cuts(store.read("interactions"), cfg.pairs.history_cap).first().asDict()
    return StepSummary(
        "pairs",
        tables=[res],
        metrics={"location_level": level, "co_click_pairs": counts.get("co_click", 0), "geo_constrained_pairs": counts.get("geo_constrained", 0),
                 **cuts},
        notes=[f"pairs.history_cap={cfg.pairs.history_cap}: {cuts['users_over_history_cap']:,} user(s) over the cap; "
               f"{cuts['history_items_cut']:,} (user, item) rows and {cuts['user_pairs_cut']:,} per-user item pairs left out of the co-click join"],
    )
