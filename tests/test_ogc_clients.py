"""Clients someone else wrote read /ogc: GDAL's OAPIF driver (what QGIS's "add layer" and
ogr2ogr use, through pyogrio) and OWSLib's OGC API – Features client, against a live server.

GDAL reads every collection whole, page by page (a small PAGE_SIZE), and must find the same
features, properties and geometries as our own JSON API gives (the units: the stored grids
dissolved here); in EPSG:4549 (northing, easting on the wire) within 1 cm of pyproj's transform
of the stored geometry, in EPSG:4490 (lat, lon on the wire) as stored; and a spatial filter in
either CRS selects what the stored geometries say.

The server runs in a thread: GDAL is read through pyogrio's Arrow path, which lets go of the
GIL while it waits for the server (the row path keeps it, and the server thread would wait).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import httpx
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import pytest
import shapely
from owslib.ogcapi.features import Features

from geo_service.core.settings import Settings
from geo_service.core.snapshot import SnapshotStore
from geo_service.storage.files import FilesBackend
from geo_service.storage.reloader import snapshot_of
from geo_service.web.app import create_app
from tests.ogcdata import file_cases, ogc_dataset, stored_grids
from tests.services import app_in_thread

TO_4549 = pyproj.Transformer.from_crs(4326, 4549, always_xy=True)
COLLECTIONS = ["grids", "communities", "streets", "districts", "stalls", "vendor_clusters", "cases"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ogc_dataset(tmp_path_factory.mktemp("ogc-clients") / "data")


@pytest.fixture(scope="module")
def live(data: Path) -> Iterator[str]:
    backend = FilesBackend(data)
    snap = snapshot_of(backend.load(), "weifang-central")

    def make(base: str) -> Any:
        settings = Settings(data_dir=data, public_base_url=base, case_escalation_poll_s=3600)
        return create_app(settings, SnapshotStore(snap), backend)

    with app_in_thread(make) as (base, app):
        file_cases(app.state.runtime.cases, snap)
        yield base


@pytest.fixture(scope="module")
def http(live: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live, timeout=30) as client:
        yield client


def gdal(live: str, layer: str, **options: Any) -> gpd.GeoDataFrame:
    """``layer`` as GDAL's OAPIF driver reads it (open options: PAGE_SIZE, CRS, ...)."""
    df = pyogrio.read_dataframe(f"OAPIF:{live}/ogc", layer=layer, use_arrow=True, **options)
    assert isinstance(df, gpd.GeoDataFrame)
    return df


def api_features(http: httpx.Client, path: str) -> list[dict[str, Any]]:
    """Every feature of one of our own JSON API listings, following its pages."""
    out: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = http.get(path, params={"limit": 1000, "offset": offset}).json()
        out += page["features"]
        offset += page["numberReturned"]
        if offset >= page["numberMatched"]:
            return out


def flat_grid(props: dict[str, Any]) -> dict[str, Any]:
    """The API's GRID (nested units and officer) as the flat fields of the grid layer."""
    out = {k: v for k, v in props.items() if not isinstance(v, dict)}
    for key in ("community", "street", "district"):
        out[f"{key}_code"], out[f"{key}_name"] = props[key]["code"], props[key]["name"]
    out["officer_name"], out["officer_phone"] = props["officer"]["name"], props["officer"]["phone"]
    return out


def plain(value: Any) -> Any:
    """A value GDAL read, as the JSON API writes it."""
    if value is None or (np.isscalar(value) and pd.isna(value)):
        return None
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "isoformat") and not isinstance(value, datetime):
        return value.isoformat()  # a date
    return value


def assert_same(df: gpd.GeoDataFrame, features: list[dict[str, Any]], skip: set[str]) -> None:
    """GDAL's rows are the API's features: ids, every property GDAL read, every coordinate."""
    assert df["id"].tolist() == [f["id"] for f in features]
    columns = [c for c in df.columns if c not in ("id", "geometry", *skip)]
    for row, feature in zip(df.itertuples(index=False), features, strict=True):
        got = {c: plain(getattr(row, c)) for c in columns}
        want = {c: feature["properties"].get(c) for c in columns}
        assert got == want, feature["id"]
    coords = shapely.get_coordinates(df.geometry.to_numpy())
    expected = shapely.get_coordinates(
        np.array([shapely.geometry.shape(f["geometry"]) for f in features])
    )
    assert np.array_equal(coords, expected)


# -- GDAL -----------------------------------------------------------------------------------
def test_gdal_lists_every_collection(live: str) -> None:
    layers = pyogrio.list_layers(f"OAPIF:{live}/ogc")
    assert layers[:, 0].tolist() == COLLECTIONS


def test_gdal_reads_the_grids_as_our_api_gives_them(live: str, http: httpx.Client) -> None:
    df = gdal(live, "grids", PAGE_SIZE="400")  # 4 pages
    features = api_features(http, "/api/v1/grids")
    for f in features:
        f["properties"] = flat_grid(f["properties"])
    assert len(df) == 1355 and df.crs.to_string() == "OGC:CRS84"
    assert df["households"].isna().any() and df["officer_name"].isna().any()  # nulls survive
    assert_same(df, features, skip=set())


@pytest.mark.parametrize(("layer", "path"), [("stalls", "/api/v1/stalls"),
                                             ("vendor_clusters", "/api/v1/vendor-clusters")])  # fmt: skip
def test_gdal_reads_the_facilities_as_our_api_gives_them(
    live: str, http: httpx.Client, layer: str, path: str
) -> None:
    df = gdal(live, layer, PAGE_SIZE="50")
    features = api_features(http, path)
    assert len(df) == len(features) > 40
    # the API lists only the relocation fields a stall has; GDAL's columns hold null for those
    assert_same(df, features, skip=set())


def test_gdal_reads_the_cases_as_our_api_gives_them(live: str, http: httpx.Client) -> None:
    df = gdal(live, "cases", PAGE_SIZE="3")
    features = api_features(http, "/api/v1/cases")
    assert len(df) == len(features) == 4
    times = [c for c in df.columns if c.endswith("_datetime") or c == "deadline"]
    assert_same(df, features, skip=set(times))
    for c in times:  # typed as date-time by the schema: the same instants
        got = pd.to_datetime(df[c], utc=True)
        want = pd.to_datetime([f["properties"][c] for f in features], utc=True)
        assert got.tolist() == list(want), c


@pytest.mark.parametrize(("layer", "column"), [("communities", "community_code"),
                                               ("streets", "street_code"),
                                               ("districts", "district_code")])  # fmt: skip
def test_gdal_reads_units_that_are_their_grids_dissolved(
    live: str, data: Path, layer: str, column: str
) -> None:
    df = gdal(live, layer, PAGE_SIZE="50")
    grids = stored_grids(data)
    groups = grids.groupby(column)
    assert df["code"].tolist() == sorted(groups.groups)
    assert df["population"].tolist() == groups["population"].sum().tolist()
    assert df["grids"].tolist() == groups.size().tolist()
    unions = groups.geometry.apply(lambda g: shapely.union_all(g.to_numpy()))
    served = shapely.transform(
        df.geometry.to_numpy(), lambda c: np.column_stack(TO_4549.transform(*c.T))
    )
    stored = shapely.transform(
        unions.to_numpy(), lambda c: np.column_stack(TO_4549.transform(*c.T))
    )
    assert shapely.area(shapely.symmetric_difference(served, stored)).max() < 1.0  # m²


def test_gdal_reads_the_grids_in_cgcs2000_gauss_kruger(live: str, data: Path) -> None:
    df = gdal(live, "grids", CRS="EPSG:4549", PAGE_SIZE="500")
    assert df.crs.to_epsg() == 4549
    grids = stored_grids(data)
    assert df["code"].tolist() == grids["code"].tolist()
    lon, lat = shapely.get_coordinates(grids.geometry.to_numpy()).T
    easting, northing = TO_4549.transform(lon, lat)
    got = shapely.get_coordinates(df.geometry.to_numpy())  # GDAL puts easting first again
    assert np.abs(got - np.column_stack([easting, northing])).max() < 0.01  # 1 cm


def test_gdal_reads_the_stalls_in_cgcs2000_geographic(live: str, data: Path) -> None:
    df = gdal(live, "stalls", CRS="EPSG:4490", PAGE_SIZE="100")
    assert df.crs.to_epsg() == 4490
    stalls = gpd.read_file(data / "stalls.geojson").sort_values("code")
    assert df["code"].tolist() == stalls["code"].tolist()
    got = shapely.get_coordinates(df.geometry.to_numpy())
    assert np.abs(got - shapely.get_coordinates(stalls.geometry.to_numpy())).max() < 1e-7


def test_gdal_spatial_filters_in_degrees_and_in_metres(live: str, data: Path) -> None:
    grids = stored_grids(data)
    lon0, lat0, lon1, lat1 = 119.10, 36.69, 119.13, 36.72
    expected = grids.loc[grids.intersects(shapely.box(lon0, lat0, lon1, lat1)), "code"].tolist()
    assert 10 < len(expected) < 200
    df = gdal(live, "grids", bbox=(lon0, lat0, lon1, lat1), PAGE_SIZE="100")
    assert df["code"].tolist() == expected
    # GDAL sends the box in EPSG:4549's own order (northing first) with bbox-crs
    e0, n0, e1, n1 = 420000.0, 4064000.0, 422500.0, 4066500.0
    box = shapely.transform(shapely.box(e0, n0, e1, n1).segmentize(10.0), lambda c: np.column_stack(
        pyproj.Transformer.from_crs(4549, 4326, always_xy=True).transform(*c.T)))  # fmt: skip
    expected = grids.loc[grids.intersects(box), "code"].tolist()
    assert expected
    df = gdal(live, "grids", CRS="EPSG:4549", bbox=(e0, n0, e1, n1), PAGE_SIZE="100")
    assert df["code"].tolist() == expected


# -- OWSLib ---------------------------------------------------------------------------------
def test_owslib_lists_collections_and_reads_items_in_a_box(live: str, data: Path) -> None:
    api = Features(f"{live}/ogc")
    assert api.feature_collections() == COLLECTIONS
    assert api.collection("stalls")["title"] == "小蓝棚便民修理点"
    bbox = [119.10, 36.68, 119.17, 36.73]
    got = api.collection_items("stalls", bbox=bbox, limit=1000)
    stalls = gpd.read_file(data / "stalls.geojson").sort_values("code")
    inside = stalls.geometry.x.between(bbox[0], bbox[2]) & stalls.geometry.y.between(
        bbox[1], bbox[3]
    )
    assert [f["id"] for f in got["features"]] == stalls.loc[inside, "code"].tolist()
    assert got["numberMatched"] == int(inside.sum()) > 5
    queryables = api.collection_queryables("stalls")["properties"]
    assert queryables["services"]["items"]["enum"] == ["修鞋", "修车", "修锁配钥匙"]
