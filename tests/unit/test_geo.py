"""Hand-computed geography: haversine, H3 search schedule, certified radius, density rule."""

import math

import h3.api.basic_int as h3i
import numpy as np
import pytest

from lgsid.geo import (
    EARTH_RADIUS_KM,
    covered_radii,
    equivalent_ring,
    haversine_km,
    next_pass,
    ring_is_enough,
    search_schedule,
)
from lgsid.negatives import proxy_resolution, start_pass


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


def test_search_schedule_and_equivalent_ring():
    assert search_schedule(8, 4, 7) == [(8, 1), (8, 2), (8, 3), (8, 4), (7, 2), (7, 3), (7, 4)]
    assert search_schedule(7, 3, 7) == [(7, 1), (7, 2), (7, 3)]
    assert search_schedule(5, 1, 4) == [(5, 1), (4, 1)]
    assert search_schedule(6, 2, 5) == [(6, 1), (6, 2), (5, 1), (5, 2)]
    with pytest.raises(ValueError, match="min_res"):
        search_schedule(5, 2, 6)
    assert equivalent_ring(8, 4, 8) == 4
    assert equivalent_ring(7, 4, 8) == 11  # 4 * sqrt(7) = 10.58
    assert equivalent_ring(6, 2, 8) == 14  # 2 * 7


def test_next_pass_jumps_to_the_first_certified_disk():
    cell = h3i.latlng_to_cell(40.0, -100.0, 8)
    sched = search_schedule(8, 4, 6)
    cells = [h3i.cell_to_parent(cell, r) for r, _ in sched]
    cov = [float(covered_radii([c], k)[0]) for c, (_, k) in zip(cells, sched)]
    assert all(np.diff(cov) > 0)
    P = len(sched)
    at = cov.__getitem__
    nan = float("nan")
    # need-th candidate found at a distance between the radii of passes 4 and 5 -> pass 5;
    # exactly at pass 2's radius -> pass 2 (the boundary counts as covered); beyond all -> last
    got = next_pass(at, P, 0, np.array([(cov[4] + cov[5]) / 2, cov[2], 1e9]), np.array([8, 8, 8]), need=8)
    assert got.tolist() == [5, 2, P - 1]
    # too few candidates: jump by the density estimate r_p * sqrt((need + 1) / found)
    target = cov[1] * math.sqrt((8 + 1) / 2)
    assert next_pass(at, P, 1, np.array([nan]), np.array([2]), need=8)[0] == next(q for q in range(2, P) if cov[q] >= target)
    assert next_pass(at, P, 0, np.array([nan]), np.array([0]), need=0)[0] == 1  # sqrt(1/0.5) * r_0 < r_1
    assert next_pass(at, P, P - 1, np.array([nan]), np.array([0]), need=8).tolist() == [P - 1]
    # radii are read lazily, only as far as needed
    asked = []
    next_pass(lambda q: asked.append(q) or cov[q], P, 0, np.array([cov[1]]), np.array([8]), need=8)
    assert asked == [1]


def test_ring_is_enough_hand_cases():
    assert ring_is_enough(5, 1.2, 1.5, need=3)
    assert not ring_is_enough(5, 1.2, 1.0, need=3)  # a closer item may lie just outside the disk
    assert not ring_is_enough(2, 0.5, 9.9, need=3)  # too few locations
    assert ring_is_enough(3, 1.5, 1.5, need=3)  # boundary counts as covered
    assert ring_is_enough(np.array([5, 5, 2]), np.array([1.2, 1.6, 0.5]), 1.5, need=3).tolist() == [True, False, False]


def test_start_pass_density_rule():
    # dense: the first (smallest) disk already holds need+1 representatives
    assert start_pass([9, 40, 200], need=8) == 0
    assert start_pass([3, 9, 40, 200], need=8) == 1
    assert start_pass([3, 8, 40, 200], need=8) == 2  # 8 < need + 1 (own town is not a candidate)
    assert start_pass([0, 1, 2], need=8) == 2  # sparse everywhere: last pass
    # vectorised over anchors (rows)
    assert start_pass(np.array([[9, 40, 200], [3, 9, 40], [0, 1, 2]]), need=8).tolist() == [0, 1, 2]
    # proxy cell: the resolution whose average area (res 7: 5.16 km², res 8: 0.737 km²) is nearest, in log
    assert proxy_resolution(4.0, 8) == 7 and proxy_resolution(1.0, 8) == 8 and proxy_resolution(0.01, 8) == 8
    assert proxy_resolution(5.16 * 7, 8) == 6 and proxy_resolution(1e9, 8) == 0 and proxy_resolution(4.0, 6) == 6
    # fill: the certified circle's share of the proxy cell scales the count
    assert start_pass([3, 9, 40, 200], need=8, fill=[1, 0.5, 0.2, 0.2]) == 3


@pytest.mark.parametrize("res,k", [(7, 1), (7, 2), (5, 3)])
def test_covered_radius_is_a_true_lower_bound(res, k):
    rng = np.random.default_rng(res * 10 + k)
    cell = h3i.latlng_to_cell(40.0, -100.0, res)
    r = float(covered_radii([cell], k)[0])
    assert r > 0
    inside = set(h3i.grid_disk(cell, k))
    clat, clon = h3i.cell_to_latlng(cell)
    edge = h3i.average_hexagon_edge_length(res, "km")
    # anchors inside the cell, random points around: any point outside the disk is farther than r
    span = (k + 3) * 2 * edge / 111.0
    pts = np.column_stack([clat + rng.uniform(-span, span, 4000), clon + rng.uniform(-span, span, 4000) / math.cos(math.radians(clat))])
    outside = np.array([h3i.latlng_to_cell(a, b, res) not in inside for a, b in pts])
    anchors = [p for p in pts if h3i.latlng_to_cell(p[0], p[1], res) == cell][:20]
    assert outside.any() and anchors
    for a in anchors:
        d = haversine_km(a[0], a[1], pts[outside, 0], pts[outside, 1])
        assert d.min() >= r


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
