"""Cold-start prompts: :func:`lgsid.prompts.prompt_texts` by hand, and the SID model's use of its recorded level and origins."""

from __future__ import annotations

import json

import h3
import numpy as np
import pandas as pd
import pytest

from lgsid.config import PromptsConfig
from lgsid.errors import ConfigError, ValidationError
from lgsid.prompts import prompt_texts

CELL = h3.latlng_to_cell(33.45, -112.07, 8)
CLAT, CLON = h3.cell_to_latlng(CELL)  # the res-8 cell centre every row below is measured from
ORIGINS = pd.DataFrame({"state": ["Arizona"], "county": ["Maricopa County"], "town": ["Phoenix"], "lat": [CLAT - 0.01], "lon": [CLON]})


def _rows() -> pd.DataFrame:
    """Three raw rows: a known town (origin 0.01 deg south of the cell centre) and a town without an origin."""
    return pd.DataFrame({
        "item_id": ["a", "b", "c"], "name": ["Cafe A", "Cafe B", "Cafe C"], "brand": [None, "Nova", None],
        "category_l1": ["Food"] * 3, "category_l2": ["Cafe"] * 3, "price": [10.0, np.nan, 12.4],
        "town": ["Phoenix", "Newtown", "Newtown"], "county": ["Maricopa County"] * 3, "state": ["Arizona"] * 3,
        "lat": [CLAT, CLAT, CLAT + 0.001], "lon": [CLON] * 3,
    })


def test_prompt_texts_district_origin_table_and_own_position_rule():
    cfg = PromptsConfig()
    got = prompt_texts(_rows(), cfg, "district", ORIGINS)
    assert got["location_text"].tolist() == [
        # 0.01 deg of latitude = 1.112 km north of the town's origin
        "located in Phoenix district 1.1 km N 0.0 km E, Maricopa County, Arizona",
        # Newtown has no origin: measured from the row itself. Row b sits on the cell centre ...
        "located in Newtown district 0.0 km N 0.0 km E, Maricopa County, Arizona",
        # ... row c 0.001 deg (0.111 km) north of it, in the same cell: the centre is 0.1 km south of the row
        "located in Newtown district 0.1 km S 0.0 km E, Maricopa County, Arizona",
    ]
    assert got["prompt"][0] == "Cafe A (independent), Food / Cafe, price 10; located in Phoenix district 1.1 km N 0.0 km E, Maricopa County, Arizona"
    assert got["content_text"].tolist() == ["Cafe A (independent), Food / Cafe, price 10", "Cafe B (Nova), Food / Cafe, price unknown",
                                            "Cafe C (independent), Food / Cafe, price 12"]
    # the frame's index does not matter (Arrow batches and requests come with any index)
    shuffled = prompt_texts(_rows().set_axis([7, 3, 5]), cfg, "district", ORIGINS)
    pd.testing.assert_frame_equal(shuffled, got)


def test_prompt_texts_town_level_needs_no_position():
    got = prompt_texts(_rows().drop(columns=["lat", "lon"]), PromptsConfig(), "town")
    assert got["location_text"].tolist() == ["located in Phoenix, Maricopa County, Arizona"] + ["located in Newtown, Maricopa County, Arizona"] * 2
    with pytest.raises(ConfigError, match=r"prompts\.location_level.*'auto'"):
        prompt_texts(_rows(), PromptsConfig(), "auto")


def _model(info: dict):
    """A SIDModel holding only ``info`` (no tokenizer, no encoder)."""
    from lgsid.serving.sid_model import SIDModel

    m = SIDModel()
    m.info = info
    return m


def test_model_uses_its_recorded_level_and_origins_and_old_models_keep_the_town_template(tmp_path):
    from lgsid.config import load_config, replace
    from lgsid.serving.sid_model import INFO, save_artifacts
    from lgsid.tokenizer import build_tokenizer
    from lgsid.tokenizer.toy import toy_catalogue

    cfg = load_config(None)
    prompts = {**cfg.to_dict()["prompts"], "location_level": "district"}
    rows = _rows()
    want_district = prompt_texts(rows, cfg.prompts, "district", ORIGINS)["prompt"].tolist()
    want_town = prompt_texts(rows, cfg.prompts, "town")["prompt"].tolist()

    items, emb = toy_catalogue(48, 8, seed=1)
    tok = build_tokenizer(replace(cfg, tokenizer={"codebook_sizes": [3, 2], "epochs": 1, "batch_size": 16}).tokenizer).fit(emb, items)
    art = save_artifacts(str(tmp_path / "d"), tok, ["p"] * 3, "reference", {}, prompts, location_level="district", town_origins=ORIGINS)
    info = json.load(open(tmp_path / "d" / INFO))
    assert info["location_level"] == "district" and info["town_origins"]["lat"] == [CLAT - 0.01]  # exact through JSON
    assert _model(info).cold_start_prompts(rows) == want_district

    # a model saved before the level was recorded: the town template, even though its prompts section says district
    save_artifacts(str(tmp_path / "old"), tok, ["p"] * 3, "reference", {}, prompts)
    old = json.load(open(tmp_path / "old" / INFO))
    assert "location_level" not in old and "town_origins" not in old
    assert _model(old).cold_start_prompts(rows) == want_town
    # town level records no origins
    save_artifacts(str(tmp_path / "t"), tok, ["p"] * 3, "reference", {}, prompts, location_level="town")
    t = json.load(open(tmp_path / "t" / INFO))
    assert t["location_level"] == "town" and "town_origins" not in t and _model(t).cold_start_prompts(rows) == want_town
    assert art == str(tmp_path / "d")

    with pytest.raises(ValidationError, match=r"location_level 'district' needs town_origins"):
        save_artifacts(str(tmp_path / "x"), tok, ["p"] * 3, "reference", {}, prompts, location_level="district")
    with pytest.raises(ValidationError, match=r"location_level must be 'town' or 'district' \(resolved\), got 'auto'"):
        save_artifacts(str(tmp_path / "y"), tok, ["p"] * 3, "reference", {}, prompts, location_level="auto")
