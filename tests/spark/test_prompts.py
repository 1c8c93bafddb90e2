"""geo_prompts from items: the Spark job equals the pure formatters; nulls; bad template; rerun."""

import pandas as pd
import pytest

from lgsid.config import replace
from lgsid.errors import ConfigError
from lgsid.prompts import build_prompts, combine_prompt, combine_prompt_col, format_content, format_location
from lgsid.steps.prompts import run

pytestmark = pytest.mark.spark

ITEMS_DDL = (
    "item_id string, name string, brand string, category_l1 string, category_l2 string, price double, "
    "lat double, lon double, state string, county string, town string, address string, source string"
)
ROWS = [
    ("i1", "Joe's BBQ", "Joe's", "Food", "BBQ", 24.6, 39.8, -89.6, "Illinois", "Sangamon", "Springfield", None, "t"),
    ("i2", "Lucky Nails", None, "Beauty", "Nail salon", None, 42.1, -72.6, "Massachusetts", "Hampden", "Springfield", None, "t"),
    ("i3", "Grand Cinema", "AMC", None, "Cinema", 12.0, 45.5, -122.7, "Oregon", "Multnomah", "Portland", None, "t"),
]


def test_prompts_parts_match_pure_python(spark, cfg):
    df = build_prompts(spark.createDataFrame(ROWS, ITEMS_DDL), cfg.prompts, "town").toPandas().set_index("item_id")
    cols = ITEMS_DDL.replace(" string", "").replace(" double", "").split(", ")
    for r in ROWS:
        row = dict(zip(cols, r))
        got = df.loc[row["item_id"]]
        assert got.content_text == format_content(row, cfg.prompts)
        assert got.location_text == format_location(row, cfg.prompts)
        assert got.prompt == combine_prompt(got.content_text, got.location_text, cfg.prompts)
        assert (got.state, got.county, got.town, got.lat, got.lon) == (row["state"], row["county"], row["town"], row["lat"], row["lon"])
    # the right parts, by hand
    assert df.loc["i1"].prompt == "Joe's BBQ (Joe's), Food / BBQ, price 25; located in Springfield, Sangamon, Illinois"
    assert df.loc["i2"].content_text == "Lucky Nails (independent), Beauty / Nail salon, price unknown"
    assert df.loc["i3"].content_text == "Grand Cinema (AMC), unknown / Cinema, price 12"
    assert df.loc["i2"].location_text == "located in Springfield, Hampden, Massachusetts"


def test_combine_prompt_col_matches_python(spark, cfg):
    from pyspark.sql import functions as F

    pairs = [("a content", "in X"), ("", "located in Y, Z"), ("c; d", "")]
    for tpl in ("{content}; {location}", "[{location}] {content} {content}"):
        pc = replace(cfg, prompts={"prompt_template": tpl}).prompts
        df = spark.createDataFrame(pairs, "c string, l string")
        got = [r[0] for r in df.select(combine_prompt_col(F.col("c"), F.col("l"), pc)).collect()]
        assert got == [combine_prompt(c, l, pc) for c, l in pairs]
    with pytest.raises(ConfigError, match="prompts.prompt_template"):
        combine_prompt_col(F.col("c"), F.col("l"), replace(cfg, prompts={"prompt_template": "{content!r}: {location}"}).prompts)


def test_bad_template_is_a_config_error(cfg):
    with pytest.raises(ConfigError, match=r"prompts\.content_template.*brnd"):
        replace(cfg, prompts={"content_template": "{name} by {brnd}"})


def test_run_writes_geo_prompts_idempotently(spark, cfg, store):
    store.write(spark.createDataFrame(ROWS, ITEMS_DDL), "items")
    s1 = run(spark, cfg)
    t1 = store.to_pandas("geo_prompts").sort_values("item_id").reset_index(drop=True)
    s2 = run(spark, cfg)
    t2 = store.to_pandas("geo_prompts").sort_values("item_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(t1, t2)
    assert s1.tables[0].rows == 3 and s2.tables[0].version == s1.tables[0].version + 1
