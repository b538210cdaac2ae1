"""`geo-service validate`: one report in row order, errors and warnings told apart and counted,
the same as JSON; a grid without an officer is a warning; library warnings do not leak."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import geopandas as gpd
import pyproj
import pytest
import shapely
from typer.testing import CliRunner

from geo_service.cli.main import app
from geo_service.core.schema import LayerName
from geo_service.domain.validation import KINDS, validate_file
from tests.citybuilder import BASE, squares

GEOD = pyproj.Geod(ellps="WGS84")
WIDE = {"COLUMNS": "220"}  # one table row per line in the captured output
runner = CliRunner()


def geod_area(poly: shapely.Polygon) -> float:
    return abs(GEOD.geometry_area_perimeter(poly)[0])


def run(*args: str) -> Any:
    return runner.invoke(app, ["validate", *args], env=WIDE)


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 columns × 4 rows of squares (001-012): 001 pushed half a cell east over 002 (an
    overlap), 003 without officer, 004 without phone, 005 left out (a hole inside the area),
    010 a bad code, 011 a negative population. With 005 gone the file has rows 1-11."""
    frame = squares(3, 4)
    frame.loc[0, "geometry"] = shapely.box(119.105, 36.73, 119.115, 36.74)
    frame.loc[2, ["officer_name", "officer_phone"]] = [None, ""]
    frame.loc[3, "officer_phone"] = "  "
    frame.loc[9, "code"] = "37070500100101X"
    frame.loc[10, "population"] = -3
    frame = frame.drop(index=4)
    path = tmp_path_factory.mktemp("validate") / "grids.geojson"
    frame.to_file(path, driver="GeoJSON")
    return path


@pytest.fixture(scope="module")
def messy_report(messy: Path) -> dict[str, Any]:
    res = run(str(messy), "--json")
    assert res.exit_code == 1, res.output
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def test_json_report_is_in_row_order_with_levels_counted(messy_report: dict[str, Any]) -> None:
    body = messy_report
    problems = body["problems"]
    assert set(body) >= {"ok", "errors", "warnings", "problems", "topology"}
    assert body["ok"] is False
    assert body["errors"] == sum(p["level"] == "error" for p in problems)
    assert body["warnings"] == sum(p["level"] == "warning" for p in problems)
    assert {p["level"] for p in problems} == {"error", "warning"}
    assert all(p["kind"] in KINDS for p in problems)
    # File rows: 1 overlap, 3 no officer, 4 no phone, 9 bad code (010), 10 negative
    # population (011); the gap last (it has no row).
    by_row = [(p["row"], p["kind"], p["level"]) for p in problems]
    assert by_row == [
        (1, "overlap", "error"),
        (3, "officer", "warning"),
        (4, "officer", "warning"),
        (9, "value", "error"),
        (10, "value", "error"),
        (None, "gap", "error"),
    ]
    assert [p["code"] for p in problems[:3]] == [f"{BASE}001", f"{BASE}003", f"{BASE}004"]
    assert problems[1]["field"] == "officer_name" and problems[2]["field"] == "officer_phone"
    assert problems[3]["code"] == "37070500100101X" and problems[3]["field"] == "code"
    assert problems[4]["code"] == f"{BASE}011" and problems[4]["field"] == "population"


def test_overlap_and_gap_rows_carry_the_grids_and_the_area(messy_report: dict[str, Any]) -> None:
    overlap, gap = messy_report["problems"][0], messy_report["problems"][-1]
    assert overlap["codes"] == [f"{BASE}001", f"{BASE}002"]
    expected = geod_area(shapely.box(119.11, 36.73, 119.115, 36.74))
    assert abs(overlap["area_m2"] - expected) / expected < 2e-3
    assert (
        f"{overlap['area_m2']:,.0f} m²" in overlap["message"] and f"{BASE}002" in overlap["message"]
    )
    hole = shapely.box(119.11, 36.72, 119.12, 36.73)  # where 005 was
    assert abs(gap["area_m2"] - geod_area(hole)) / geod_area(hole) < 2e-3
    assert hole.contains(shapely.Point(gap["at"]))
    # The eight squares around it (corners touch it at a point; 001 still borders it).
    assert gap["codes"] == [f"{BASE}{k:03d}" for k in (1, 2, 3, 4, 6, 7, 8, 9)]
    topo = messy_report["topology"]
    assert [o["codes"] for o in topo["overlaps"]] == [overlap["codes"]]
    assert topo["gaps"][0]["area_m2"] == gap["area_m2"]


def test_table_shows_the_same_findings_in_chinese(
    messy: Path, messy_report: dict[str, Any]
) -> None:
    res = run(str(messy))
    assert res.exit_code == 1
    out = res.stdout
    for header in ("行号", "编码", "级别", "类别", "问题"):
        assert header in out
    lines = [line for line in out.splitlines() if line.startswith("│")]
    assert len(lines) == len(messy_report["problems"])
    for line, p in zip(lines, messy_report["problems"], strict=True):
        cells = [c.strip() for c in line.strip("│").split("│")]
        assert cells[0] == (str(p["row"]) if p["row"] else "—")
        assert cells[1] == (p["code"] or "—")
        assert cells[2] == {"error": "错误", "warning": "警告"}[p["level"]]
        assert cells[3] == KINDS[p["kind"]]
    assert "{" not in out and "'codes'" not in out  # no raw Python dicts
    assert "错误 4 个，警告 2 个 → 未通过" in out
    assert res.stderr == ""


def test_warnings_alone_pass_with_exit_0(tmp_path: Path) -> None:
    frame = squares()
    frame.loc[1, "officer_name"] = ""
    path = tmp_path / "grids.gpkg"
    frame.to_file(path, driver="GPKG")
    res = run(str(path))
    assert res.exit_code == 0, res.output
    assert "警告" in res.stdout and "网格员" in res.stdout and f"{BASE}002" in res.stdout
    assert "错误 0 个，警告 1 个 → 通过" in res.stdout
    body = json.loads(run(str(path), "--json").stdout)
    assert body["ok"] is True and body["errors"] == 0 and body["warnings"] == 1
    assert [(p["row"], p["kind"]) for p in body["problems"]] == [(2, "officer")]


def test_library_warnings_are_caught_not_leaked(tmp_path: Path) -> None:
    """pyogrio warns about a column of mixed types; the row check already names the bad row,
    so the warning vanishes (and nothing reaches stderr). A shapely warning about unreadable
    WKT in a CSV is relevant and becomes a report line."""
    fc = json.loads(squares().to_json())
    fc["features"][1]["properties"]["population"] = "many"
    mixed = tmp_path / "mixed.geojson"
    mixed.write_text(json.dumps(fc), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning escaping validate_file fails the test
        checked = validate_file(mixed, LayerName.grids)
    assert [(f.row, f.field, f.level) for f in checked.findings] == [(2, "population", "error")]
    res = run(str(mixed))
    assert res.exit_code == 1 and res.stderr == ""

    csv = tmp_path / "stalls.csv"
    csv.write_text(
        "code,name,services,hours,status,wkt\n"
        "XLP-370705-901,甲,修鞋,08:00-18:00,active,POINT (119.16 36.71)\n"
        "XLP-370705-902,乙,修车,08:00-18:00,active,POINT (119.16\n",
        encoding="utf-8",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checked = validate_file(csv, LayerName.stalls, crs="wgs84")
    kinds = [(f.row, f.kind, f.level) for f in checked.findings]
    assert kinds == [(None, "file", "warning"), (2, "geometry", "error")]
    assert "WKT" in checked.findings[0].message


def test_unreadable_file_exits_2_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "grids.geojson"
    bad.write_text("not json", encoding="utf-8")
    res = run(str(bad))
    assert res.exit_code == 2
    assert "无法读取" in res.stderr and str(bad) in res.stderr.replace("\n", "")


def test_stored_layers_pass(tmp_path: Path) -> None:
    """The bundled grids validate clean (no officer missing): exit 0, no findings."""
    grids = gpd.read_file(Path(__file__).resolve().parent.parent / "data" / "grids.geojson")
    path = tmp_path / "grids.gpkg"
    grids.iloc[:60].to_file(path, driver="GPKG")
    body = json.loads(run(str(path), "--json").stdout)
    assert body["errors"] == 0 and body["rows_loaded"] == 60
    assert not [p for p in body["problems"] if p["kind"] == "officer"]
