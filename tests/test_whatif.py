"""What-if: incremental updates agree with a full recomputation and with hand-worked areas; added
sites come back rounded and named (units, nearest landmark) as independent references say."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import psycopg
import pytest
import shapely
from fastapi.testclient import TestClient

from geo_service.analysis.coverage import CoverageInputError, compute_coverage
from geo_service.analysis.whatif import what_if
from geo_service.core.schema import LayerName
from geo_service.core.snapshot import Snapshot, build_snapshot
from tests import rawdata
from tests.handmade_city import Site, Square, build, to_lonlat
from tests.placeref import UNIT_COLUMNS, compass_point, nearest_landmark, postgis_units


def with_points(
    snapshot: Snapshot, layer: str, lon: list[float], lat: list[float], drop: list[str]
) -> Snapshot:
    """A fresh snapshot with points added to / removed from a layer (no shared cache)."""
    frames = {
        LayerName.grids: snapshot.grids.frame,
        LayerName.stalls: snapshot.stalls.frame,
        LayerName.vendor_clusters: snapshot.vendor_clusters.frame,
    }
    frame = frames[LayerName(layer)]
    frame = frame[~frame["code"].isin(drop)]
    extra = gpd.GeoDataFrame(
        {"code": [f"NEW-000000-{i:03d}" for i in range(len(lon))]},
        geometry=shapely.points(lon, lat) if lon else gpd.GeoSeries([]),
        crs=4326,
    )
    frames[LayerName(layer)] = gpd.GeoDataFrame(
        gpd.pd.concat([frame, extra], ignore_index=True), crs=4326
    )
    return build_snapshot(frames, "modified", "2", projection=snapshot.projection)


def test_adding_a_disc_to_an_empty_layer() -> None:
    snap = build([Square(-1000, -1000, 0, 1000, 500), Square(0, -1000, 1000, 1000, 1500)])
    res = what_if(snap, "stalls", 400, *zip(to_lonlat(0, 0), strict=True), by="grid")
    half = math.pi * 400**2 / 2
    assert res.before["covered_m2"] == 0
    assert res.after["covered_m2"] == pytest.approx(2 * half, rel=1e-9)
    assert res.gain["covered_population"] == pytest.approx((500 + 1500) * half / 2e6, rel=1e-9)
    assert res.units["code"].tolist() == ["370705001001001", "370705001001002"]
    np.testing.assert_allclose(res.units["covered_m2_after"], half, rtol=1e-9)
    assert res.added["grid_code"].iloc[0] in res.units["code"].tolist()


def test_removing_every_facility_uncovers_everything() -> None:
    snap = build([Square(0, 0, 1000, 1000, 100)], [Site(200, 200), Site(800, 800)])
    res = what_if(snap, "stalls", 300, remove=["XLP-370705-001", "XLP-370705-002"])
    assert res.before["covered_m2"] > 0
    assert res.after["covered_m2"] == pytest.approx(0, abs=1e-9)
    assert res.after["covered_population"] == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("by", ["grid", "community", "street", "district"])
def test_incremental_equals_full_recomputation(snapshot: Snapshot, by: str) -> None:
    layer, radius = "vendor_clusters", 1000.0
    base = compute_coverage(snapshot, layer, radius)
    gap = base.gaps.geometry.iloc[0].representative_point()
    drop = [str(snapshot.vendor_clusters.codes[3])]
    res = what_if(snapshot, layer, radius, [gap.x], [gap.y], drop, by=by)
    full = compute_coverage(with_points(snapshot, layer, [gap.x], [gap.y], drop), layer, radius, by)
    for key, value in full.overall.items():
        assert res.after[key] == pytest.approx(value, rel=1e-9, abs=1e-6)
    assert res.before == pytest.approx(base.overall)
    # Every unit whose figures differ is reported, with the right numbers, and no other.
    before = compute_coverage(snapshot, layer, radius, by).units.set_index("code")
    after = full.units.set_index("code")
    moved = after.index[np.abs(after["covered_m2"] - before["covered_m2"]) > 1e-6].tolist()
    assert sorted(res.units["code"]) == sorted(moved)
    assert len(moved) > 0
    got = res.units.set_index("code")
    np.testing.assert_allclose(got["covered_m2_after"], after.loc[got.index, "covered_m2"])
    np.testing.assert_allclose(got["covered_m2_before"], before.loc[got.index, "covered_m2"])
    assert len(res.grids) < len(snapshot.grids) / 5  # only nearby grids were recomputed


def test_bad_what_if_input(snapshot: Snapshot) -> None:
    with pytest.raises(CoverageInputError) as exc:
        what_if(snapshot, "stalls", 500, remove=["XLP-000000-999"])
    assert exc.value.field == "remove"
    with pytest.raises(CoverageInputError) as exc:
        what_if(snapshot, "stalls", 500, [-70.0], [40.0])  # New York: outside the metric CRS
    assert exc.value.field == "add"
    with pytest.raises(CoverageInputError) as exc:
        what_if(snapshot, "stalls", -5, [119.1], [36.7])
    assert exc.value.field == "radius_m"


def test_nothing_changed_is_nothing_changed(snapshot: Snapshot) -> None:
    res = what_if(snapshot, "stalls", 500)
    assert res.before == res.after
    assert len(res.units) == 0 and len(res.grids) == 0


def test_added_sites_come_back_rounded_and_named(
    client: TestClient, pg: psycopg.Connection, snapshot: Snapshot
) -> None:
    """Coordinates at 6 decimals (not 15); units from PostGIS ST_Covers on the raw grids; the
    nearest landmark, distance and compass point from pyproj.Geod by brute force."""
    rng = np.random.default_rng(12)
    minx, miny, maxx, maxy = snapshot.bounds
    lon = [*rng.uniform(minx, maxx, 6), maxx + 0.004]  # the last one outside every grid
    lat = [*rng.uniform(miny, maxy, 6), (miny + maxy) / 2]
    stall = rawdata.points("stalls")[0]
    lon.append(stall["lon"] + 3e-5)  # about 3 m east of a stall: "紧邻"
    lat.append(stall["lat"])
    body = {
        "layer": "stalls",
        "radius_m": 500,
        "add": [[x, y] for x, y in zip(lon, lat, strict=True)],
    }
    r = client.post("/api/v1/coverage/what-if", json=body)
    assert r.status_code == 200, r.text
    added = r.json()["added"]
    assert len(added) == len(lon)
    units = postgis_units(pg, lon, lat)
    assert units[-2] is None and sum(u is not None for u in units) >= 6
    for site, x, y, unit in zip(added, lon, lat, units, strict=True):
        for got, sent in ((site["lon"], x), (site["lat"], y)):
            assert got == round(sent, 6) and abs(got - sent) <= 5e-7
            assert len(repr(got).split(".")[1]) <= 6
        if unit is None:
            assert site["grid_code"] is None and site["street_name"] is None
            assert site["label"].startswith("不在任何网格内")
        else:
            assert site["grid_code"] == unit["code"] and site["grid_name"] == unit["name"]
            for col in UNIT_COLUMNS:
                assert site[col] == unit[col], col
            assert unit["name"] in site["label"] and unit["street_name"] in site["label"]
        ref, dist, az = nearest_landmark(x, y)
        mark = site["landmark"]
        assert (mark["layer"], mark["code"], mark["name"]) == (
            ref["layer"],
            ref["code"],
            ref["name"],
        )
        assert mark["distance_m"] == pytest.approx(dist, abs=0.06)
        if dist < 15:
            assert mark["direction"] is None and f"紧邻{ref['name']}" in site["label"]
        else:
            assert mark["direction"] == compass_point(az)
            assert f"{ref['name']}{compass_point(az)}方向约 " in site["label"]
            said = float(site["label"].rsplit("约 ", 1)[1].split(" ")[0])
            metres = said * 1000 if site["label"].endswith("公里") else said
            assert abs(metres - dist) <= (50 if metres >= 1000 else 5)
    assert added[-1]["landmark"]["direction"] is None


def test_what_if_counts_active_facilities_unless_told(client: TestClient) -> None:
    """The same default as every other coverage entry: active stalls only; include_inactive
    adds the suspended and relocated ones; an unknown field (the old active_only) is a 422."""
    url, body = "/api/v1/coverage/what-if", {"layer": "stalls", "radius_m": 1000}
    default = client.post(url, json=body).json()
    wider = client.post(url, json={**body, "include_inactive": True}).json()
    assert (default["include_inactive"], wider["include_inactive"]) == (False, True)
    for key, flag in ((default, "false"), (wider, "true")):
        get = client.get(
            "/api/v1/coverage", params={**body, "by": "district", "include_inactive": flag}
        ).json()
        assert key["before"] == get["overall"]
    assert wider["before"]["covered_population"] > default["before"]["covered_population"]
    old = client.post(url, json={**body, "active_only": True})
    assert old.status_code == 422 and old.json()["errors"][0]["field"] == "active_only"
