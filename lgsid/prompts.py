"""Geo prompts: per item, a content part, a location part and the combined prompt (step ``prompts``).

Alignment pairs one item's content with *another* item's location (the mismatched prompts of the
reward lists), so the two parts are built and stored separately and combined by
:func:`combine_prompt`. The pure-Python formatters below are the single definition of a prompt:
the Spark job calls them inside a pandas UDF, the negative miner uses
:func:`combine_prompt_col` (proven equal to :func:`combine_prompt` in the tests), and alignment
and the cold-start SID model reuse them directly.

Null fields: a missing ``brand`` renders as ``prompts.missing_brand`` ("independent"), any other
missing field as ``prompts.missing_value`` ("unknown"); a format spec such as ``{price:.0f}`` is
not applied to the placeholder.
"""

from __future__ import annotations

import math
import string
from typing import TYPE_CHECKING, Any, Mapping

from lgsid.config import PromptsConfig
from lgsid.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame, SparkSession

    from lgsid.config import LGSIDConfig
    from lgsid.steps import StepSummary

CONTENT_FIELDS = ("name", "brand", "category_l1", "category_l2", "price")
LOCATION_FIELDS = ("town", "county", "state")


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


class _NullSafeFormatter(string.Formatter):
    """``str.format`` that renders a null field as a placeholder instead of failing on its spec."""

    def __init__(self, missing: str):
        super().__init__()
        self.missing = missing

    def format_field(self, value: Any, format_spec: str) -> str:
        if _is_null(value):
            return self.missing
        return super().format_field(value, format_spec)


def _render(template: str, values: Mapping[str, Any], missing: str, key: str) -> str:
    try:
        return _NullSafeFormatter(missing).vformat(template, (), dict(values))
    except KeyError as e:
        raise ConfigError(f"invalid value for '{key}': unknown field {e} in {template!r}") from None
    except (ValueError, TypeError) as e:
        raise ConfigError(f"invalid value for '{key}': cannot format {template!r} with {dict(values)!r}: {e}") from None


def format_content(row: Mapping[str, Any], cfg: PromptsConfig) -> str:
    """The content part of an item's prompt (name, brand, category, price).

    Args:
        row: Mapping with at least the fields of ``cfg.content_template`` (items columns).
        cfg: Prompt templates.

    Returns:
        e.g. ``"Joe's BBQ (independent), Food / BBQ, price 25"``.
    """
    values = {f: row.get(f) for f in CONTENT_FIELDS}
    if _is_null(values["brand"]) or str(values["brand"]).strip() == "":
        values["brand"] = cfg.missing_brand
    return _render(cfg.content_template, values, cfg.missing_value, "prompts.content_template")


def format_location(row: Mapping[str, Any], cfg: PromptsConfig) -> str:
    """The location part of an item's prompt (town, county, state), e.g. ``"located in Austin, Travis, Texas"``."""
    values = {f: row.get(f) for f in LOCATION_FIELDS}
    return _render(cfg.location_template, values, cfg.missing_value, "prompts.location_template")


def combine_prompt(content: str, location: str, cfg: PromptsConfig) -> str:
    """The full prompt from a content part and a (possibly another item's) location part."""
    return _render(cfg.prompt_template, {"content": content, "location": location}, cfg.missing_value, "prompts.prompt_template")


def combine_prompt_col(content: "Column", location: "Column", cfg: PromptsConfig) -> "Column":
    """:func:`combine_prompt` as a Spark Column (``concat`` of the template's literal text and fields).

    Usable inside higher-order functions (``F.transform``). Only plain ``{content}``/``{location}``
    fields are supported here; a template with a format spec or conversion raises ConfigError.
    """
    from pyspark.sql import functions as F

    parts: list = []
    cols = {"content": content, "location": location}
    for literal, field, spec, conv in string.Formatter().parse(cfg.prompt_template):
        if literal:
            parts.append(F.lit(literal))
        if field is None:
            continue
        if spec or conv or field not in cols:
            raise ConfigError(
                f"invalid value for 'prompts.prompt_template': only plain {{content}} and {{location}} fields are supported, got {{{field}}}"
            )
        parts.append(F.coalesce(cols[field], F.lit(cfg.missing_value)))
    return F.concat(*parts) if parts else F.lit("")


def build_prompts(items_df: "DataFrame", cfg: PromptsConfig) -> "DataFrame":
    """Items -> geo prompts (pure transform; geo_prompts schema).

    The text is produced by :func:`format_content`, :func:`format_location` and
    :func:`combine_prompt` inside one pandas UDF, so Spark and Python agree by construction.

    Args:
        items_df: Rows of the ``items`` table.
        cfg: Prompt templates.

    Returns:
        DataFrame ``item_id, content_text, location_text, prompt, state, county, town, lat, lon``.
    """
    import pandas as pd
    from pyspark.sql import functions as F

    # Fail fast on the driver (a bad template would otherwise fail inside an executor).
    probe = format_content({"name": "n", "brand": None, "category_l1": "a", "category_l2": "b", "price": 1.0}, cfg)
    combine_prompt(probe, format_location({"town": "t", "county": "c", "state": "s"}, cfg), cfg)

    @F.pandas_udf("content_text string, location_text string, prompt string")
    def _texts(name, brand, c1, c2, price, town, county, state):  # each a pd.Series
        content, location, prompt = [], [], []
        for row in zip(name, brand, c1, c2, price, town, county, state):
            r = dict(zip(CONTENT_FIELDS + LOCATION_FIELDS, row))
            c, l = format_content(r, cfg), format_location(r, cfg)
            content.append(c)
            location.append(l)
            prompt.append(combine_prompt(c, l, cfg))
        return pd.DataFrame({"content_text": content, "location_text": location, "prompt": prompt})

    t = _texts(*[F.col(c) for c in CONTENT_FIELDS + LOCATION_FIELDS])
    return items_df.select(
        "item_id",
        t["content_text"].alias("content_text"),
        t["location_text"].alias("location_text"),
        t["prompt"].alias("prompt"),
        "state",
        "county",
        "town",
        "lat",
        "lon",
    )


def run(spark: "SparkSession", cfg: "LGSIDConfig") -> "StepSummary":
    """Step ``prompts``: read ``items``, write ``geo_prompts`` (one commit, overwrite = idempotent)."""
    from lgsid.steps import StepSummary
    from lgsid.storage import DeltaStore

    store = DeltaStore(spark, cfg.storage)
    res = store.write(build_prompts(store.read("items"), cfg.prompts), "geo_prompts", mode="overwrite")
    return StepSummary("prompts", tables=[res], metrics={"items": res.rows})
