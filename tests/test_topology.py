"""Topology report on hand-made grids with known overlaps, gaps and misfiled grids."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pyproj
import shapely
from typer.testing import CliRunner

from geo_service.cli.main import app
from geo_service.core.layers import validate_layer
from geo_service.core.topology import TopologyReport, check_grids
from tests.citybuilder import BASE, grid_row, squares

GEOD = pyproj.Geod(ellps="WGS84")


def geod_area(poly: shapely.Polygon) -> float:
    return abs(GEOD.geometry_area_perimeter(poly)[0])


def report_for(frame: gpd.GeoDataFrame) -> TopologyReport:
    clean, load = validate_layer(frame, "grids")
    assert load.ok, load.problems
    return check_grids(clean)


def test_clean_lattice_has_no_errors() -> None:
    assert report_for(squares(3, 3)).ok


def test_overlap_is_reported_with_its_area() -> None:
    frame = squares()
    shifted = shapely.box(119.105, 36.71, 119.115, 36.72)  # 001 moved half a cell east
    frame.loc[0, "geometry"] = shifted
    rep = report_for(frame)
    assert len(rep.overlaps) == 1
    ov = rep.overlaps[0]
    assert ov.codes == (f"{BASE}001", f"{BASE}002") and not ov.inside
    expected = geod_area(shapely.box(119.11, 36.71, 119.115, 36.72))
    assert abs(ov.area_m2 - expected) / expected < 2e-3
    assert shapely.box(119.11, 36.71, 119.115, 36.72).contains(shapely.Point(ov.at))
    assert len(rep.gaps) == 0  # the hole it leaves is open to the outside, not a gap


def test_hole_inside_the_area_is_a_gap() -> None:
    frame = squares(3, 3)
    centre = frame.loc[4, "geometry"]
    frame = frame.drop(index=4)
    rep = report_for(frame)
    assert len(rep.gaps) == 1
    gap = rep.gaps[0]
    assert abs(gap.area_m2 - geod_area(centre)) / geod_area(centre) < 2e-3
    assert centre.contains(shapely.Point(gap.at))
    # The eight squares around the hole (the corner ones touch it at a point).
    assert gap.codes == tuple(c for c in frame["code"])
    body = rep.to_dict()
    assert body["gaps"][0]["codes"] == list(frame["code"]) and body["gap_area_m2"] == gap.area_m2


def test_grid_inside_another_and_a_duplicate_are_reported_once() -> None:
    frame = squares()
    inner = grid_row(f"{BASE}005", shapely.box(119.102, 36.712, 119.104, 36.714))
    twin = grid_row(f"{BASE}006", frame.loc[3, "geometry"])
    frame = gpd.GeoDataFrame(
        [*frame.to_dict("records"), inner, twin], geometry="geometry", crs=4326
    )
    rep = report_for(frame)
    pairs = sorted((o.codes, o.inside) for o in rep.overlaps)
    assert pairs == [((f"{BASE}001", f"{BASE}005"), True), ((f"{BASE}004", f"{BASE}006"), True)]
    inside = next(o for o in rep.overlaps if o.codes[1] == f"{BASE}005")
    expected = geod_area(shapely.box(119.102, 36.712, 119.104, 36.714))
    assert abs(inside.area_m2 - expected) / expected < 2e-3


def test_codes_that_do_not_nest_and_detached_grids() -> None:
    frame = squares()
    far = grid_row(f"{BASE}009", shapely.box(119.3, 36.7, 119.31, 36.71))
    wrong = grid_row(
        "370705001002001", shapely.box(119.12, 36.70, 119.13, 36.71), community_code="370705009002"
    )
    frame = gpd.GeoDataFrame([*frame.to_dict("records"), far, wrong], geometry="geometry", crs=4326)
    rep = report_for(frame)
    assert [h.code for h in rep.hierarchy] == ["370705001002001"]
    assert rep.hierarchy[0].community_code == "370705009002"
    assert [d.code for d in rep.detached] == [f"{BASE}009"]


def test_cli_validate_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    good = tmp_path / "good.geojson"
    squares(3, 3).to_file(good, driver="GeoJSON")
    res = runner.invoke(app, ["validate", str(good)])
    assert res.exit_code == 0, res.output
    bad_frame = squares(3, 3).drop(index=4)
    bad = tmp_path / "bad.geojson"
    bad_frame.to_file(bad, driver="GeoJSON")
    res = runner.invoke(app, ["validate", str(bad), "--json"])
    assert res.exit_code == 1
    body = json.loads(res.stdout)
    assert body["ok"] is False and len(body["topology"]["gaps"]) == 1
    assert [p["kind"] for p in body["problems"]] == ["gap"]
