"""Files for desktop GIS (issue 11): every format read back by a reader we did not write (GDAL
through pyogrio, json, csv, pyarrow) holds the same features, properties (Chinese names and
values intact) and geometries (within 1 cm of pyproj's transform of the stored coordinates);
what the export writes, the import reads back unchanged; CSV from Chinese Excel reads in UTF-8
with a BOM, UTF-16 and GBK.

The data is one street of the bundled grids (23 grids) with two Chinese extra columns, one of
them longer than a Shapefile field name holds, and all stalls, two of them relocated.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import zipfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import pytest
import shapely
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from geo_service.cli.main import app as cli
from geo_service.core.fieldnames import full_names, shapefile_names
from geo_service.core.layers import LayerFileError, load_layer
from geo_service.core.principal import Role
from geo_service.core.schema import SCHEMAS, SHAPEFILE_NAMES
from geo_service.core.settings import Settings
from geo_service.core.snapshot import SnapshotStore
from geo_service.storage.dataset import load_dataset
from geo_service.storage.files import FilesBackend
from geo_service.web.app import create_app
from tests import rawdata
from tests.keys import key_for

STREET = "370704002"
LONG_NAME, SHORT_NAME = "网格员联系电话", "备注"  # 21 and 6 bytes in UTF-8
METRIC = 4549
CRS_PARAMS = {"wgs84": 4326, "cgcs2000": 4490, "EPSG:4549": METRIC}
MEDIA = {
    "gpkg": "application/geopackage+sqlite3",
    "fgb": "application/flatgeobuf",
    "shp": "application/zip",
    "geojson": "application/geo+json",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
SUFFIX = {"shp": ".zip"}
runner = CliRunner()


def _features() -> dict[str, list[dict[str, Any]]]:
    grids = [
        {**f, "properties": {**f["properties"], LONG_NAME: f["properties"]["officer_phone"]}}
        for f in rawdata.features("grids")
        if f["properties"]["street_code"] == STREET
    ]
    for i, f in enumerate(grids):
        f["properties"][SHORT_NAME] = f"第{i + 1}号，含逗号与“引号”"
    stalls = [dict(f, properties=dict(f["properties"])) for f in rawdata.features("stalls")]
    stalls[0]["properties"].update(
        status="relocated",
        moved_to_code=stalls[1]["properties"]["code"],
        moved_to_address="奎文区新址",
    )
    stalls[2]["properties"].update(status="relocated", moved_to_lon=119.16, moved_to_lat=36.71)
    return {
        "grids": grids,
        "stalls": stalls,
        "vendor_clusters": rawdata.features("vendor_clusters"),
    }


FEATURES = _features()


def _write_data(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for layer, feats in FEATURES.items():
        doc = {"type": "FeatureCollection", "features": feats}
        (folder / f"{layer}.geojson").write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_data(tmp_path_factory.mktemp("export-data"))


@pytest.fixture(scope="module")
def backend(data_dir: Path) -> FilesBackend:
    return FilesBackend(data_dir)


@pytest.fixture(scope="module")
def client(data_dir: Path, backend: FilesBackend) -> Iterator[TestClient]:
    settings = Settings(data_dir=data_dir, rate_limit_enabled=False)
    app = create_app(settings, SnapshotStore(load_dataset(data_dir)), backend)
    with TestClient(app) as c:
        yield c


# --- an independent reading of each format ---------------------------------------------------


def _crs_of_geojson(doc: dict[str, Any]) -> int:
    name = doc.get("crs", {}).get("properties", {}).get("name", "OGC:CRS84")
    return 4326 if name.endswith("CRS84") else int(name.rsplit(":", 1)[1])


def read_back(fmt: str, body: bytes, folder: Path, epsg: int) -> tuple[gpd.GeoDataFrame, int]:
    """The file as a frame of its own names, and the EPSG code the file itself declares (a CSV
    declares none: the one asked for)."""
    path = folder / ("file.zip" if fmt == "shp" else f"file.{fmt}")
    path.write_bytes(body)
    if fmt == "geojson":
        doc = json.loads(body)
        rows = [f["properties"] for f in doc["features"]]
        geoms = [shapely.geometry.shape(f["geometry"]) for f in doc["features"]]
        return gpd.GeoDataFrame(rows, geometry=geoms), _crs_of_geojson(doc)
    if fmt == "csv":
        assert body.startswith(codecs.BOM_UTF8)  # Excel reads a BOM-less file as GBK
        df = pd.read_csv(io.BytesIO(body), encoding="utf-8-sig", dtype=str, keep_default_na=False)
        if "wkt" in df:
            geoms = shapely.from_wkt(df.pop("wkt"))
        else:
            x, y = ("lon", "lat") if epsg != METRIC else ("x", "y")
            geoms = shapely.points(df.pop(x).astype(float), df.pop(y).astype(float))
        return gpd.GeoDataFrame(df, geometry=geoms), epsg
    if fmt == "parquet":
        frame = gpd.read_parquet(path)
        return frame, frame.crs.to_epsg()
    if fmt == "shp":
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            for ext in (".shp", ".shx", ".dbf", ".prj", ".cpg", ".fields.csv"):
                assert sum(n.endswith(ext) for n in names) == 1, (ext, names)
            assert "README.txt" in names
            cpg = next(n for n in names if n.endswith(".cpg"))
            assert zf.read(cpg).decode().strip().upper() in ("UTF-8", "UTF8")
            side = zf.read(next(n for n in names if n.endswith(".fields.csv")))
            pairs = list(csv.reader(io.StringIO(side.decode("utf-8-sig"))))
        assert pairs[0] == ["shapefile_field", "field"]
        assert all(len(short.encode()) <= 10 for short, _ in pairs[1:])
        frame = pyogrio.read_dataframe(path)
        frame = frame.rename(columns=dict(pairs[1:]))
        return frame, frame.crs.to_epsg()
    frame = pyogrio.read_dataframe(path)
    return frame, frame.crs.to_epsg()


def _same_value(expected: Any, actual: Any) -> bool:
    missing = actual is None or actual == "" or (isinstance(actual, float) and math.isnan(actual))
    if expected is None:
        return missing
    if isinstance(expected, (int, float)):
        return not missing and float(actual) == float(expected)
    return bool(actual == expected)


@cache
def _to_metric(epsg: int) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(epsg, METRIC, always_xy=True)


def _metric(geoms: Any, epsg: int) -> Any:
    """Into EPSG:4549 with pyproj (what the coordinates are compared in, to the centimetre)."""
    t = _to_metric(epsg)
    return shapely.transform(geoms, lambda c: np.column_stack(t.transform(c[:, 0], c[:, 1])))


def assert_same_features(layer: str, frame: gpd.GeoDataFrame, file_epsg: int) -> None:
    source = {f["properties"]["code"]: f for f in FEATURES[layer]}
    assert sorted(frame["code"]) == sorted(source)
    columns = {c for f in source.values() for c in f["properties"]}
    assert columns <= set(frame.columns), columns - set(frame.columns)
    for col in set(frame.columns) - columns - {frame.geometry.name}:
        assert col == "version" or col in SCHEMAS[layer].field_names(), col  # type: ignore[index]
    got = frame.set_index("code").loc[list(source)]
    records = got.drop(columns=got.geometry.name).to_dict("index")
    for code, feat in source.items():
        for key, value in feat["properties"].items():
            if key != "code":
                assert _same_value(value, records[code][key]), (code, key, value)
    shapes = [shapely.geometry.shape(f["geometry"]) for f in source.values()]
    expected = shapely.normalize(_metric(np.array(shapes, dtype=object), 4326))
    actual = shapely.normalize(_metric(got.geometry.to_numpy(), file_epsg))
    counts = shapely.get_num_coordinates(actual)
    assert (counts == shapely.get_num_coordinates(expected)).all()
    offset = np.abs(shapely.get_coordinates(actual) - shapely.get_coordinates(expected))
    assert offset.max() < 0.01, offset.max()  # metres


@pytest.mark.parametrize("crs", list(CRS_PARAMS))
@pytest.mark.parametrize("fmt", list(MEDIA))
@pytest.mark.parametrize("layer", ["grids", "stalls"])
def test_every_format_reads_back_the_same_layer(
    client: TestClient, tmp_path: Path, layer: str, fmt: str, crs: str
) -> None:
    r = client.get(f"/api/v1/layers/{layer}", params={"format": fmt, "crs": crs})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == MEDIA[fmt]
    epsg = CRS_PARAMS[crs]
    stem = layer if epsg == 4326 else f"{layer}-epsg{epsg}"
    assert r.headers["content-disposition"] == (
        f'attachment; filename="{stem}{SUFFIX.get(fmt, "." + fmt)}"'
    )
    frame, declared = read_back(fmt, r.content, tmp_path, epsg)
    assert declared == epsg
    assert_same_features(layer, frame, declared)


def test_units_are_dissolved_grids_with_their_parents(client: TestClient, tmp_path: Path) -> None:
    grids = [f["properties"] for f in FEATURES["grids"]]
    shapes = [shapely.geometry.shape(f["geometry"]) for f in FEATURES["grids"]]
    geod = pyproj.Geod(ellps="GRS80")
    for layer, level in (("communities", "community"), ("streets", "street")):
        r = client.get(f"/api/v1/layers/{layer}", params={"format": "gpkg"})
        assert r.status_code == 200, r.text
        frame, _ = read_back("gpkg", r.content, tmp_path, 4326)
        assert sorted(frame["code"]) == sorted({g[f"{level}_code"] for g in grids})
        for row in frame.itertuples():
            members = [i for i, g in enumerate(grids) if g[f"{level}_code"] == row.code]
            assert row.name == grids[members[0]][f"{level}_name"]
            assert row.population == sum(grids[i]["population"] for i in members)
            assert row.grids == len(members)
            assert row.district_name == grids[members[0]]["district_name"]  # a parent
            area = sum(abs(geod.geometry_area_perimeter(shapes[i])[0]) for i in members)
            assert abs(abs(geod.geometry_area_perimeter(row.geometry)[0]) - area) < 1.0


def test_coverage_files_carry_the_api_figures(client: TestClient, tmp_path: Path) -> None:
    query = {"layer": "stalls", "radius_m": 500, "by": "community"}
    figures = client.get("/api/v1/coverage", params=query).json()["units"]
    r = client.get("/api/v1/coverage/units", params={**query, "format": "csv"})
    assert r.status_code == 200, r.text
    assert "coverage-stalls-500m-community.csv" in r.headers["content-disposition"]
    frame, _ = read_back("csv", r.content, tmp_path, 4326)
    got = frame.set_index("code")
    assert sorted(got.index) == sorted(u["code"] for u in figures)
    for unit in figures:
        assert got.loc[unit["code"], "name"] == unit["name"]
        assert got.loc[unit["code"], "street_name"]  # parent units ride along
        for key in ("area_m2", "covered_m2", "population", "covered_population"):
            assert abs(float(got.loc[unit["code"], key]) - unit[key]) <= 0.05 + 1e-9 * unit[key]


def test_gap_pieces_lie_in_their_grid_with_their_area(client: TestClient, tmp_path: Path) -> None:
    params = {"layer": "stalls", "radius_m": 300, "min_area_m2": 500, "format": "shp"}
    r = client.get("/api/v1/coverage/gap-pieces", params={**params, "crs": "EPSG:4549"})
    assert r.status_code == 200, r.text
    frame, epsg = read_back("shp", r.content, tmp_path, METRIC)
    assert epsg == METRIC and len(frame) > 0
    assert {"community_code", "community_name", "street_code", "district_code"} <= set(frame)
    grids = {f["properties"]["code"]: f for f in FEATURES["grids"]}
    area = shapely.area(frame.geometry.to_numpy())  # metres: the file is in EPSG:4549
    assert np.allclose(area, frame["area_m2"], rtol=1e-6, atol=0.01)
    assert (frame["area_m2"] >= 500).all()
    for row in frame.itertuples():
        grid = grids[row.grid_code]
        assert row.community_name == grid["properties"]["community_name"]
        outline = _metric(shapely.geometry.shape(grid["geometry"]), 4326)
        assert shapely.covers(shapely.buffer(outline, 0.01), row.geometry)  # to the centimetre
        assert row.population <= grid["properties"]["population"] + 1e-6


# --- import reads what export writes ----------------------------------------------------------


def test_shapefile_validates_and_imports_unchanged(data_dir: Path, tmp_path: Path) -> None:
    data = _write_data(tmp_path / "data")
    env = {"GEO_SERVICE_DATA_DIR": str(data), "COLUMNS": "200"}
    shp = tmp_path / "out" / "my_grids.shp"
    res = runner.invoke(cli, ["export", "grids", "--out", str(shp), "--crs", "cgcs2000"], env=env)
    assert res.exit_code == 0, res.output
    assert {p.name for p in shp.parent.iterdir()} == {
        f"my_grids{ext}" for ext in (".shp", ".shx", ".dbf", ".prj", ".cpg", ".fields.csv")
    }
    frame, report = load_layer(shp, "grids", strict=True)
    assert report.ok and not report.problems
    assert LONG_NAME in frame and SHORT_NAME in frame  # the sidecar names the Chinese ones
    res = runner.invoke(cli, ["import", "grids", str(shp)], env=env)
    assert res.exit_code == 0, res.output
    after = load_dataset(data)
    assert (after.grids.frame["version"] == 1).all()  # nothing changed, nothing bumped
    assert set(after.grids.frame[LONG_NAME]) == {
        f["properties"][LONG_NAME] for f in FEATURES["grids"]
    }

    # Without its sidecar the layer's own names still map back (the fixed table).
    (shp.parent / "my_grids.fields.csv").unlink()
    frame, report = load_layer(shp, "grids", strict=True)
    assert report.ok and frame["community_name"].notna().all()


def test_upload_of_an_exported_zip_replaces_nothing(
    client: TestClient, backend: FilesBackend
) -> None:
    body = client.get("/api/v1/layers/stalls", params={"format": "shp"}).content
    key = key_for(backend, "export-admin", Role.admin)
    r = client.put(
        "/api/v1/layers/stalls", params={"format": "zip"}, content=body, headers={"X-API-Key": key}
    )
    assert r.status_code == 200, r.text
    assert r.json()["unchanged"] == len(FEATURES["stalls"]), r.json()


def test_csv_from_chinese_excel(tmp_path: Path) -> None:
    rows = [
        ["code", "name", "services", "hours", "status", "lon", "lat"],
        [
            "XLP-370705-901",
            "人民广场修鞋点",
            "修鞋、修车",
            "08:00-18:00",
            "active",
            "119.16",
            "36.71",
        ],
    ]
    text = "".join(",".join(r) + "\r\n" for r in rows)
    files = {
        "bom.csv": codecs.BOM_UTF8 + text.encode("utf-8"),
        "plain.csv": text.encode("utf-8"),
        "gbk.csv": text.encode("gbk"),
        "unicode.txt": text.replace(",", "\t").encode("utf-16"),  # Excel's "Unicode text"
    }
    for name, raw in files.items():
        (tmp_path / name).write_bytes(raw)
        frame, report = load_layer(tmp_path / name, "stalls", crs="wgs84", strict=True)
        assert report.ok, (name, report.problems)
        assert list(frame["name"]) == ["人民广场修鞋点"], name
        assert list(frame["services"].iloc[0]) == ["修鞋", "修车"], name
    (tmp_path / "junk.csv").write_bytes(b"code,name\n\xff\xfe\xff,x\n")
    with pytest.raises(LayerFileError, match="neither UTF-8 nor GBK"):
        load_layer(tmp_path / "junk.csv", "stalls", crs="wgs84")


# --- names ------------------------------------------------------------------------------------


def test_shapefile_names_fit_are_unique_and_map_back() -> None:
    every = {n for s in SCHEMAS.values() for n in s.field_names()}
    shorts = list(SHAPEFILE_NAMES.values())
    assert len(set(shorts)) == len(shorts) and not set(shorts) & every
    columns = [*SCHEMAS["grids"].field_names(), "网格员联系电话", "网格员联系地址", "Code2"]  # type: ignore[index]
    names = shapefile_names(columns)
    assert all(len(s.encode("utf-8")) <= 10 for s in names.values())
    assert len({s.casefold() for s in names.values()}) == len(columns)
    assert names["community_name"] == "comm_name" and names["code"] == "code"
    assert names["网格员联系电话"] == "网格员" and names["网格员联系地址"] == "网格_1"
    sidecar = {short: full for full, short in names.items()}
    assert full_names(names.values(), sidecar) == {s: f for f, s in names.items() if s != f}
    assert shapefile_names(columns) == names  # deterministic


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/layers/grid", {}, "layer"),
        ("/api/v1/layers/grids", {"format": "kml"}, "format"),
        ("/api/v1/layers/grids", {"crs": "gcj02"}, "crs"),
        ("/api/v1/layers/stalls", {"crs": "EPSG:3857"}, "crs"),
        ("/api/v1/coverage/units", {"layer": "stalls", "format": "xlsx"}, "format"),
        ("/api/v1/coverage/gap-pieces", {"layer": "stalls", "crs": "EPSG:4547"}, "crs"),
    ],
)
def test_bad_layer_format_or_crs_is_a_400_naming_it(
    client: TestClient, path: str, params: dict[str, str], field: str
) -> None:
    r = client.get(path, params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["errors"][0]["field"] == field
    assert repr(params.get(field, "grid")) in body["detail"]


def test_files_are_removed_once_sent(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for fmt in ("shp", "gpkg"):
        assert client.get("/api/v1/layers/grids", params={"format": fmt}).status_code == 200
    assert client.get("/api/v1/coverage/units", params={"layer": "x"}).status_code == 422
    assert list(tmp_path.iterdir()) == []


def test_cli_export_and_its_errors(data_dir: Path, tmp_path: Path) -> None:
    env = {"GEO_SERVICE_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    out = tmp_path / "gaps.gpkg"
    args = ["export", "coverage-gaps", "--radius", "300", "--crs", "EPSG:4549", "--out", str(out)]
    res = runner.invoke(cli, args, env=env)
    assert res.exit_code == 0, res.output
    info = pyogrio.read_info(out)
    assert info["crs"] == "EPSG:4549" and info["features"] > 0
    for args, message in (
        (["export", "grids", "--format", "kml"], "--format: unknown format 'kml'"),
        (["export", "grids", "--crs", "bd09"], "--crs: unsupported crs 'bd09'"),
        (["export", "grid"], "LAYER: unknown layer 'grid'"),
        (["export", "coverage-units"], "--radius: coverage-units needs a radius"),
        (["export", "grids", "--format", "csv", "--out", str(out)], "names no csv file"),
    ):
        res = runner.invoke(cli, args, env=env)
        assert res.exit_code == 2 and message in res.stderr, (args, res.output)
