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
