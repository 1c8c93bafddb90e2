"""Step ``pairs``: ``items`` + ``interactions`` -> ``gdpo_pairs`` (D_mix, :mod:`lgsid.pairs`)."""

from __future__ import annotations

from lgsid.config import LGSIDConfig
from lgsid.pairs import build_pairs
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
    return StepSummary(
        "pairs",
        tables=[res],
        metrics={"location_level": level, "co_click_pairs": counts.get("co_click", 0), "geo_constrained_pairs": counts.get("geo_constrained", 0)},
    )
