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


def test_place_coordinates_are_the_geonames_points_of_reverse_geocoded_names():
    from lgsid.sources.geocode import place_coordinates, reverse_geocode

    g = reverse_geocode([33.494307, 30.27], [-112.059703, -97.74])
    lat, lon = place_coordinates(g.state, g.county, g.town)
    assert list(g.town) == ["Phoenix", "Austin"]
    np.testing.assert_allclose(lat, [33.44838, 30.26715], atol=1e-5)  # the GeoNames cities1000 rows
    np.testing.assert_allclose(lon, [-112.07404, -97.74306], atol=1e-5)
    lat, _ = place_coordinates(["Nowhere"], ["No County"], ["Notown"])
    assert np.isnan(lat).all()
