"""Hand-computed geography: haversine, unit vectors, location level, local offsets."""

import math

import numpy as np
import pytest

from lgsid.geo import EARTH_RADIUS_KM, haversine_km, unit_xyz


def test_haversine_hand_computed():
    # one degree along a meridian = R * pi / 180
    assert haversine_km(10.0, 20.0, 11.0, 20.0) == pytest.approx(EARTH_RADIUS_KM * math.pi / 180, rel=1e-12)
    # a quarter of the equator and half the globe (antipodes)
    assert haversine_km(0.0, 0.0, 0.0, 90.0) == pytest.approx(EARTH_RADIUS_KM * math.pi / 2, rel=1e-12)
    assert haversine_km(0.0, 0.0, 0.0, 180.0) == pytest.approx(EARTH_RADIUS_KM * math.pi, rel=1e-12)
    # equator to pole along any meridian
    assert haversine_km(0.0, -74.0, 90.0, 100.0) == pytest.approx(EARTH_RADIUS_KM * math.pi / 2, rel=1e-12)
    # a known city pair on the sphere: New York - Los Angeles ~ 3936 km, Paris - London ~ 343.5 km
    assert haversine_km(40.7128, -74.0060, 34.0522, -118.2437) == pytest.approx(3935.7, abs=1.0)
    assert haversine_km(48.8566, 2.3522, 51.5074, -0.1278) == pytest.approx(343.5, abs=0.5)
    assert haversine_km(45.0, 7.0, 45.0, 7.0) == 0.0


def test_haversine_vectorised_and_symmetric():
    lat = np.array([0.0, 10.0, -33.9])
    lon = np.array([0.0, 20.0, 151.2])
    d = haversine_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])  # (3, 3)
    assert d.shape == (3, 3)
    np.testing.assert_allclose(d, d.T)
    np.testing.assert_allclose(np.diag(d), 0.0, atol=1e-9)
    assert d[0, 1] == pytest.approx(float(haversine_km(0.0, 0.0, 10.0, 20.0)))


def test_unit_xyz_hand_computed():
    # (0, 0) -> x axis, (0, 90) -> y axis, north pole -> z axis; chord between (0,0) and (0,90) is sqrt(2)
    np.testing.assert_allclose(unit_xyz([0.0, 0.0, 90.0], [0.0, 90.0, 0.0]), np.eye(3), atol=1e-15)
    a, b = unit_xyz([0.0], [0.0])[0], unit_xyz([0.0], [90.0])[0]
    assert np.linalg.norm(a - b) == pytest.approx(math.sqrt(2.0))


def test_choose_location_level():
    from lgsid.geo import choose_location_level

    assert choose_location_level(300, 250, 64) == "town"  # the demo: towns all over the US
    assert choose_location_level(10, 1, 64) == "district"  # Phoenix: one county, ~10 towns
    assert choose_location_level(40, 3, 64) == "district"  # too few towns for full lists
    assert choose_location_level(64, 2, 64) == "town"
    assert choose_location_level(500, 1, 64) == "district"  # no other county for far negatives


def test_local_offsets_km_by_hand():
    from lgsid.geo import local_offsets_km

    # 0.01 deg of latitude = 6371.0088 * 0.01 * pi / 180 = 1.1119508 km; at lat 60 a degree of
    # longitude is half as long, so 0.02 deg east is the same 1.111950 km
    n, e = local_offsets_km([60.01, 60.0, 59.99], [10.0, 10.02, 9.98], 60.0, 10.0)
    np.testing.assert_allclose(n, [1.111950, 0.0, -1.111950], atol=1e-6)
    np.testing.assert_allclose(e, [0.0, 1.111950, -1.111950], atol=1e-6)
    n, e = local_offsets_km([0.0], [-179.99], 0.0, 179.99)  # across the antimeridian: 0.02 deg east
    np.testing.assert_allclose(e, [2.223901], atol=1e-6)
