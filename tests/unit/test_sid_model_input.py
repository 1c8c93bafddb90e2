"""Bad requests to the SID model: one-line errors naming the field, raised before any encoding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lgsid.errors import ValidationError
from lgsid.serving.sid_model import SIDModel, check_request


def _raw(n: int = 3) -> pd.DataFrame:
    """``n`` raw (cold-start) item rows, all valid."""
    return pd.DataFrame({
        "item_id": [f"i{k}" for k in range(n)], "name": [f"Shop {k}" for k in range(n)], "brand": [None] * n,
        "category_l1": ["Food"] * n, "category_l2": ["Pizza"] * n, "price": [10.0] * n,
        "town": ["Austin"] * n, "county": ["Travis"] * n, "state": ["Texas"] * n,
        "lat": [30.27, 30.28, 30.29][:n], "lon": [-97.74, -97.75, -97.76][:n],
    })


def _model() -> SIDModel:
    """A SIDModel with nothing loaded: any call that got past validation to the encoder or tokenizer fails loudly."""
    m = SIDModel()
    m.tokenizer, m.l1_paths, m._encoder, m.info = None, None, None, {}
    return m


def test_valid_requests_pass():
    check_request(_raw(), "cold_start")
    check_request(_raw().drop(columns=["name", "brand", "price"]), "embedding")  # raw fields are for cold start only
    check_request(_raw().assign(lat=[-90.0, 0.0, 90.0], lon=[-180.0, 0.0, 180.0]), "cold_start")  # bounds included


@pytest.mark.parametrize("field, value, match", [
    ("lat", 123.0, r"SID model \(mode 'cold_start'\): field 'lat' out of range \[-90, 90\] in row\(s\) \[1\] \(item_id \['i1'\]\): \[123\.0\] \(1 bad row\(s\) of 3\)"),
    ("lat", -90.5, r"field 'lat' out of range \[-90, 90\] in row\(s\) \[1\]"),
    ("lon", 181.0, r"field 'lon' out of range \[-180, 180\] in row\(s\) \[1\] \(item_id \['i1'\]\): \[181\.0\]"),
    ("lon", np.inf, r"field 'lon' out of range \[-180, 180\]"),
    ("lat", None, r"field 'lat' missing or not a number in row\(s\) \[1\]"),
    ("lon", "east", r"field 'lon' missing or not a number in row\(s\) \[1\] \(item_id \['i1'\]\): \['east'\]"),
])
def test_bad_coordinates_are_refused_naming_the_field(field, value, match):
    df = _raw()
    df[field] = df[field].astype(object)
    df.loc[1, field] = value
    with pytest.raises(ValidationError, match=match) as e:
        _model().predict(None, df, params={"mode": "cold_start"})  # raised before the (absent) encoder is touched
    assert "\n" not in str(e.value)
    with pytest.raises(ValidationError, match=rf"mode 'embedding'\): field '{field}'"):
        _model().predict(None, df, params={"mode": "embedding"})  # the fast path refuses them too


def test_missing_columns_are_named():
    with pytest.raises(ValidationError, match=r"SID model \(mode 'cold_start'\): request is missing required column\(s\) \['lat', 'name'\]; mode 'cold_start' needs \[") as e:
        _model().predict(None, _raw().drop(columns=["lat", "name"]), params={"mode": "cold_start"})
    assert "\n" not in str(e.value)
    with pytest.raises(ValidationError, match=r"SID model \(mode 'embedding'\): request is missing required column\(s\) \['town'\]"):
        _model().predict(None, _raw().drop(columns=["town"]))


def test_request_errors_become_http_400_in_mlflow_serving():
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as e:
        check_request(_raw().assign(lat=[0.0, 91.0, 0.0]), "cold_start")
    assert e.value.get_http_status_code() == 400  # not MLflow's generic "unexpected error" (500-style) answer
    assert e.value.message == str(e.value) and str(e.value).startswith("SID model (mode 'cold_start'): field 'lat'")


def test_unknown_mode_keeps_its_error():
    with pytest.raises(ValidationError, match=r"unknown param mode='fast'; expected one of \['embedding', 'cold_start'\]"):
        _model().predict(None, _raw(), params={"mode": "fast"})


def test_many_bad_rows_are_counted_and_the_first_five_named():
    df = _raw(3)
    df = pd.concat([df] * 4, ignore_index=True).assign(item_id=[f"i{k}" for k in range(12)])
    df.loc[[2, 3, 5, 7, 8, 9, 11], "lat"] = 95.0
    with pytest.raises(ValidationError, match=r"in row\(s\) \[2, 3, 5, 7, 8\] \(item_id \['i2', 'i3', 'i5', 'i7', 'i8'\]\): \[95\.0, 95\.0, 95\.0, 95\.0, 95\.0\] \(7 bad row\(s\) of 12\)"):
        check_request(df, "cold_start")
