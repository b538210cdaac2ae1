"""Import checks: every rejected or repaired row is reported, nothing is dropped silently."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import prcoords
import pytest
import shapely

from geo_service.core.layers import LayerFileError, load_layer, validate_layer
from tests.citybuilder import BASE, grid_row, squares


def write_geojson(path: Path, rows: list[dict]) -> Path:
    feats = []
    for r in rows:
        props = {k: v for k, v in r.items() if k != "geometry"}
        geom = None if r.get("geometry") is None else shapely.geometry.mapping(r["geometry"])
        feats.append({"type": "Feature", "geometry": geom, "properties": props})
    path.write_text(
        json.dumps({"type": "FeatureCollection", "features": feats}, ensure_ascii=False)
    )
    return path


def test_clean_layer_loads_sorted_by_code(tmp_path: Path) -> None:
    frame = squares()
    path = write_geojson(tmp_path / "g.geojson", list(reversed(frame.to_dict("records"))))
    out, report = load_layer(path, "grids")
    assert report.ok and report.rows_read == report.rows_loaded == 4
    assert list(out["code"]) == sorted(frame["code"])
    assert out.crs.to_epsg() == 4326


def test_every_bad_row_is_reported(tmp_path: Path) -> None:
    box = shapely.box(119.1, 36.7, 119.11, 36.71)
    bowtie = shapely.Polygon([(119.2, 36.7), (119.21, 36.71), (119.21, 36.7), (119.2, 36.71)])
    rows = [
        grid_row(f"{BASE}001", box),
        grid_row(f"{BASE}001", shapely.box(119.3, 36.7, 119.31, 36.71)),  # duplicate code
        grid_row("12345", box),  # bad code
        grid_row(f"{BASE}003", box, name=None),  # missing name
        grid_row(f"{BASE}004", None),  # no geometry
        grid_row(f"{BASE}005", shapely.Point(119.1, 36.7)),  # wrong type
        grid_row(f"{BASE}006", bowtie),  # invalid, repairable
        grid_row(
            f"{BASE}007", shapely.box(500000, 4000000, 501000, 4001000)
        ),  # metres, not degrees
        grid_row(f"{BASE}008", box, population="many"),  # not a number
        grid_row(f"{BASE}009", box, population=-3),  # negative
    ]
    out, report = load_layer(write_geojson(tmp_path / "bad.geojson", rows), "grids")
    by_row = {p.row: p for p in report.problems}
    fields_by_row: dict[int | None, set[str | None]] = {}
    for p in report.problems:
        fields_by_row.setdefault(p.row, set()).add(p.field)
    assert "duplicate code" in by_row[2].message and "row 1" in by_row[2].message
    assert "code" in fields_by_row[3]
    assert by_row[4].field == "name" and "missing" in by_row[4].message
    assert by_row[5].field == "geometry" and "missing" in by_row[5].message
    assert "not a polygon" in by_row[6].message
    assert by_row[7].action == "repaired" and "Self-intersection" in by_row[7].message
    assert "CRS" in by_row[8].message
    assert by_row[9].field == "population" and "number" in by_row[9].message
    assert by_row[10].field == "population" and "below" in by_row[10].message
    assert sorted(out["code"]) == [f"{BASE}001", f"{BASE}006"]
    assert shapely.is_valid(out.geometry).all()
    repaired = out.set_index("code").geometry[f"{BASE}006"]
    assert abs(repaired.area - 0.01 * 0.01 / 2) < 1e-9  # two triangles, each a quarter
    assert report.rows_read == 10 and report.rows_loaded == 2
    assert len({p.row for p in report.rejected}) == 8 and len(report.repaired) == 1


def test_missing_columns_reject_the_layer(tmp_path: Path) -> None:
    rows = [{"code": f"{BASE}001", "geometry": shapely.box(119.1, 36.7, 119.11, 36.71)}]
    out, report = load_layer(write_geojson(tmp_path / "x.geojson", rows), "grids")
    assert len(out) == 0
    assert "missing required columns" in report.problems[0].message
    assert "community_code" in report.problems[0].message


def test_csv_needs_a_declared_crs_and_gcj02_is_converted(tmp_path: Path) -> None:
    wgs = (119.16, 36.71)
    g = prcoords.wgs_gcj(prcoords.Coords(wgs[1], wgs[0]))
    csv = tmp_path / "stalls.csv"
    csv.write_text(
        "code,name,services,hours,status,lon,lat\n"
        f"XLP-370705-001,测试修鞋点,修鞋;修车,08:00-18:00,active,{g.lon},{g.lat}\n"
        "XLP-370705-002,坏坐标,修鞋,08:00-18:00,active,abc,36.7\n"
        "XLP-370705-003,坏服务,修电脑,08:00-18:00,active,119.1,36.7\n",
        encoding="utf-8",
    )
    with pytest.raises(LayerFileError, match="CRS"):
        load_layer(csv, "stalls")
    out, report = load_layer(csv, "stalls", crs="gcj02")
    assert list(out["code"]) == ["XLP-370705-001"]
    assert out.iloc[0]["services"] == ["修鞋", "修车"]
    p = out.geometry.iloc[0]
    assert abs(p.x - wgs[0]) < 1e-6 and abs(p.y - wgs[1]) < 1e-6
    rejected = {p.row: p for p in report.rejected}
    assert rejected[2].field == "geometry" and rejected[3].field == "services"


def test_projected_file_is_reprojected(tmp_path: Path) -> None:
    frame = squares().to_crs(4549)
    path = tmp_path / "g.gpkg"
    frame.to_file(path, driver="GPKG")
    out, report = load_layer(path, "grids")
    assert report.ok
    assert abs(out.geometry.iloc[0].bounds[0] - 119.10) < 1e-7


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "junk.geojson"
    p.write_text("{not json")
    with pytest.raises(LayerFileError, match="cannot be read"):
        load_layer(p, "grids")
    with pytest.raises(LayerFileError, match="no such file"):
        load_layer(tmp_path / "nope.geojson", "grids")


def test_validate_layer_in_memory_keeps_extra_columns() -> None:
    frame = squares()
    frame["note"] = "x"
    out, report = validate_layer(gpd.GeoDataFrame(frame), "grids")
    assert report.ok and "note" in out.columns
