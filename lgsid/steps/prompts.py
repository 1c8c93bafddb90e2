"""Step ``prompts``: ``items`` -> ``geo_prompts`` (:mod:`lgsid.prompts`)."""

from __future__ import annotations

from lgsid.config import LGSIDConfig
from lgsid.prompts import build_prompts, catalogue_location
from lgsid.steps.summary import StepSummary


def run(spark, cfg: LGSIDConfig) -> StepSummary:
    """Step ``prompts``: read ``items``, write ``geo_prompts`` (one commit, overwrite = idempotent)."""
    from lgsid.storage import DeltaStore

    store = DeltaStore(spark, cfg.storage)
    items = store.read("items")
    level, origins = catalogue_location(items, cfg.prompts)
    res = store.write(build_prompts(items, cfg.prompts, level, origins), "geo_prompts", mode="overwrite")
    n_loc = store.read("geo_prompts").select("state", "county", "town", "location_text").distinct().count()
    return StepSummary("prompts", tables=[res], metrics={"items": res.rows, "location_level": level, "locations": n_loc})
