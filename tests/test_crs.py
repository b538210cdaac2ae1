"""CRS conversions against independent implementations (prcoords, coord-convert, pyproj)."""

from __future__ import annotations

import numpy as np
import prcoords
import pyproj
import pytest
from coord_convert import transform as cc
from hypothesis import given, settings
from hypothesis import strategies as st

from geo_service.core import crs

WEIFANG = (119.16, 36.71)
# Longitudes/latitudes across mainland China where GCJ-02 applies.
china_lon = st.floats(min_value=74.0, max_value=134.0, allow_nan=False)
china_lat = st.floats(min_value=18.0, max_value=53.0, allow_nan=False)


def metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    return float(pyproj.Geod(ellps="WGS84").inv(lon1, lat1, lon2, lat2)[2])


@pytest.mark.parametrize("lon,lat", [WEIFANG, (116.397, 39.909), (121.47, 31.23), (113.26, 23.13)])
def test_forward_matches_prcoords_and_coord_convert(lon: float, lat: float) -> None:
    g = crs.wgs84_to_gcj02(lon, lat)
    ref = prcoords.wgs_gcj(prcoords.Coords(lat, lon))
    assert metres(float(g[0]), float(g[1]), ref.lon, ref.lat) < 0.01
    cg = cc.wgs2gcj(lon, lat)
    assert metres(float(g[0]), float(g[1]), cg[0], cg[1]) < 0.01
    b = crs.wgs84_to_bd09(lon, lat)
    refb = prcoords.wgs_bd(prcoords.Coords(lat, lon))
    assert metres(float(b[0]), float(b[1]), refb.lon, refb.lat) < 0.01


def test_shift_sizes_at_weifang_match_domain_notes() -> None:
    g = crs.wgs84_to_gcj02(*WEIFANG)
    b = crs.wgs84_to_bd09(*WEIFANG)
    assert 500 < metres(*WEIFANG, float(g[0]), float(g[1])) < 560  # "about 530 m"
    assert 1280 < metres(*WEIFANG, float(b[0]), float(b[1])) < 1380  # "about 1,330 m"


def test_inverse_beats_one_step_reference() -> None:
    """prcoords' exact inverse agrees to cm; its one-step ("bored") inverse is metres off."""
    g = prcoords.wgs_gcj(prcoords.Coords(WEIFANG[1], WEIFANG[0]))
    ours = crs.gcj02_to_wgs84(g.lon, g.lat)
    assert metres(float(ours[0]), float(ours[1]), *WEIFANG) < 0.05
    bored = prcoords.gcj_wgs(g)
    assert metres(bored.lon, bored.lat, *WEIFANG) > metres(float(ours[0]), float(ours[1]), *WEIFANG)


@settings(max_examples=300, deadline=None)
@given(china_lon, china_lat)
def test_gcj02_round_trip_within_5cm(lon: float, lat: float) -> None:
    glon, glat = crs.wgs84_to_gcj02(lon, lat)
    back = crs.gcj02_to_wgs84(glon, glat)
    assert metres(lon, lat, float(back[0]), float(back[1])) < 0.05


@settings(max_examples=300, deadline=None)
@given(china_lon, china_lat)
def test_bd09_round_trip_within_5cm(lon: float, lat: float) -> None:
    blon, blat = crs.wgs84_to_bd09(lon, lat)
    back = crs.bd09_to_wgs84(blon, blat)
    assert metres(lon, lat, float(back[0]), float(back[1])) < 0.05


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(china_lon, china_lat), min_size=1, max_size=50))
def test_vectorised_equals_scalar(points: list[tuple[float, float]]) -> None:
    lon = np.array([p[0] for p in points])
    lat = np.array([p[1] for p in points])
    vx, vy = crs.convert(lon, lat, "bd09", "wgs84")
    for i, (x, y) in enumerate(points):
        sx, sy = crs.convert(x, y, "bd09", "wgs84")
        assert abs(float(sx) - vx[i]) < 1e-9 and abs(float(sy) - vy[i]) < 1e-9


def test_outside_china_is_identity_like_amap() -> None:
    x, y = crs.wgs84_to_gcj02(2.35, 48.85)  # Paris
    assert (float(x), float(y)) == (2.35, 48.85)


def test_cgcs2000_treated_as_wgs84() -> None:
    x, y = crs.to_wgs84(*WEIFANG, "cgcs2000")
    assert (float(x), float(y)) == WEIFANG


def test_unknown_crs_is_rejected() -> None:
    with pytest.raises(ValueError):
        crs.to_wgs84(1, 2, "web-mercator")


@pytest.mark.parametrize(
    "lon,epsg",
    [(119.16, 4549), (116.4, 4548), (121.47, 4549), (122.0, 4550), (87.6, 4538), (2.35, 32631)],
)
def test_metric_zone_choice(lon: float, epsg: int) -> None:
    assert crs.gauss_kruger_epsg(lon) == epsg


def test_metric_projection_distances_match_geodesic() -> None:
    """1 km east of Weifang in EPSG:4549 is 1 km on the ellipsoid, to better than 0.2 m."""
    proj = crs.MetricProjection(4549)
    x, y = proj.forward(*WEIFANG)
    lon2, lat2 = proj.inverse(x + 1000.0, y)
    assert abs(metres(*WEIFANG, float(lon2), float(lat2)) - 1000.0) < 0.2
    assert proj.covers(*WEIFANG)
    assert not proj.covers(36.71, 119.16 - 100)  # far outside the zone


def test_geodesic_distance_hand_worked() -> None:
    # One degree of latitude at 36.7°N on WGS84 is about 110,960 m (meridian arc).
    d = crs.geodesic_distance_m(119.0, 36.2, 119.0, 37.2)
    assert abs(float(d) - 110_960) < 60
