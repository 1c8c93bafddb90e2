"""The pure prompt formatters and their config checks."""

import pytest

from lgsid.config import PromptsConfig, load_config
from lgsid.errors import ConfigError
from lgsid.prompts import combine_prompt, format_content, format_location

ROW = dict(name="Joe's BBQ", brand="Joe's", category_l1="Food", category_l2="BBQ", price=24.6, town="Springfield", county="Sangamon", state="Illinois")


def test_parts_and_combination():
    cfg = PromptsConfig()
    c, l = format_content(ROW, cfg), format_location(ROW, cfg)
    assert c == "Joe's BBQ (Joe's), Food / BBQ, price 25"
    assert l == "located in Springfield, Sangamon, Illinois"
    assert combine_prompt(c, l, cfg) == c + "; " + l


def test_null_brand_and_price():
    cfg = PromptsConfig()
    assert format_content({**ROW, "brand": None}, cfg) == "Joe's BBQ (independent), Food / BBQ, price 25"
    assert format_content({**ROW, "brand": "  "}, cfg).startswith("Joe's BBQ (independent)")
    assert format_content({**ROW, "price": None}, cfg).endswith("price unknown")
    assert format_content({**ROW, "price": float("nan")}, cfg).endswith("price unknown")


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("content_template", "{nme} sells {category_l2}", r"prompts\.content_template.*nme"),
        ("location_template", "in {city}", r"prompts\.location_template.*city"),
        ("prompt_template", "{content} {where}", r"prompts\.prompt_template.*where"),
        ("content_template", "{name", r"prompts\.content_template"),
    ],
)
def test_bad_template_names_the_key(key, value, match):
    with pytest.raises(ConfigError, match=match):
        PromptsConfig(**{key: value})


def test_bad_template_through_overrides():
    with pytest.raises(ConfigError, match=r"prompts\.content_template.*unknown field"):
        load_config(None, ["prompts.content_template='price {pricey}'"])


def test_district_name_by_hand():
    from lgsid.prompts import district_name

    assert district_name("Phoenix", 2.14, -0.76) == "Phoenix district 2.1 km N 0.8 km W"
    assert district_name("Phoenix", -0.04, 0.0) == "Phoenix district 0.0 km N 0.0 km E"  # rounds to 0: no "S"
    assert district_name("Tempe", -3.05, 12.36) == "Tempe district 3.0 km S 12.4 km E"


def test_district_names_measure_the_cell_centre():
    import h3

    from lgsid.prompts import district_names

    cell = h3.latlng_to_cell(33.45, -112.07, 8)
    clat, clon = h3.cell_to_latlng(cell)
    # origin 0.01 deg of latitude south of the cell centre: 1.112 km N, 0 km E, for any point of the cell
    names = district_names(["Phoenix"] * 2, [clat, clat + 0.001], [clon, clon], [clat - 0.01] * 2, [clon] * 2, 8)
    assert names == ["Phoenix district 1.1 km N 0.0 km E"] * 2
    # two venues 2 km apart (0.018 deg of latitude) get different names; the town is part of the name
    a, b, c = district_names(["Phoenix", "Phoenix", "Tempe"], [33.45, 33.468, 33.45], [-112.07] * 3, [33.45] * 3, [-112.07] * 3, 8)
    assert a != b and a.replace("Phoenix", "Tempe") == c


def test_district_location_text_and_template_check():
    cfg = PromptsConfig()
    row = {**ROW, "district": "Springfield district 1.1 km N 0.0 km E"}
    assert format_location(row, cfg, "district") == "located in Springfield district 1.1 km N 0.0 km E, Sangamon, Illinois"
    assert format_location(row, cfg) == "located in Springfield, Sangamon, Illinois"
    with pytest.raises(ConfigError, match=r"prompts\.district_template"):
        format_location(row, PromptsConfig(district_template="near {street}"), "district")
    with pytest.raises(ConfigError, match=r"prompts\.district_resolution"):
        PromptsConfig(district_resolution=16)
