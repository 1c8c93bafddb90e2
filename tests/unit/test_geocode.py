"""Offline reverse geocoding against GeoNames places we know."""

from __future__ import annotations

import numpy as np
import pytest

from lgsid.sources.geocode import load_places, reverse_geocode


def test_known_places_resolve_to_state_county_town():
    g = reverse_geocode([39.8017, 45.5234, 43.6615], [-89.6437, -122.6762, -70.2553])
    assert g[["state", "county", "town"]].values.tolist() == [
        ["Illinois", "Sangamon County", "Springfield"],
        ["Oregon", "Multnomah County", "Portland"],
        ["Maine", "Cumberland County", "Portland"],
    ]
    assert list(g["country"]) == ["US", "US", "US"]


def test_county_falls_back_to_town_where_geonames_has_no_admin2():
    g = reverse_geocode(np.array([35.6895]), np.array([139.6917]))
    assert g.loc[0, "state"] == "Tokyo" and g.loc[0, "county"] == g.loc[0, "town"] != ""


def test_empty_and_bad_input():
    assert len(reverse_geocode([], [])) == 0
    with pytest.raises(ValueError, match="point 1: lat=95.0"):
        reverse_geocode([10.0, 95.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="differ in length"):
        reverse_geocode([1.0, 2.0], [1.0])


def test_us_places_have_ambiguous_names():
    us = load_places("US")
    per = us.groupby("name")["admin1"].nunique()
    assert per["Springfield"] >= 5 and per["Portland"] >= 5
