"""The geo-service command line, run through typer's runner on temporary data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from typer.testing import CliRunner

from geo_service.cli.main import app
from geo_service.storage.dataset import load_dataset
from tests import rawdata
from tests.citybuilder import squares

runner = CliRunner()


@pytest.fixture
def data_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "data"
    shutil.copytree(rawdata.DATA_DIR, d)
    monkeypatch.setenv("GEO_SERVICE_DATA_DIR", str(d))
    return d


def test_locate_prints_the_grid(data_copy: Path) -> None:
    res = runner.invoke(app, ["locate", "119.16", "36.71", "--json"])
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout)
    p = shapely.Point(119.16, 36.71)
    expected = min(c for c, g in rawdata.geometries("grids").items() if g.covers(p))
    assert body["grid"]["code"] == expected
    res = runner.invoke(app, ["locate", "119.16", "36.71"])
    assert expected in res.stdout and "officer" in res.stdout


def test_locate_outside_and_bad_input(data_copy: Path) -> None:
    res = runner.invoke(app, ["locate", "100.0", "30.0"])
    assert res.exit_code == 1 and "nearest" in res.stdout
    res = runner.invoke(app, ["locate", "119.16", "136.71"])
    assert res.exit_code == 2


def test_import_replaces_a_layer_only_when_valid(data_copy: Path, tmp_path: Path) -> None:
    before = (data_copy / "grids.geojson").read_bytes()
    bad = squares(3, 3).drop(index=4)  # a hole in the middle
    bad_path = tmp_path / "bad.geojson"
    bad.to_file(bad_path, driver="GeoJSON")
    res = runner.invoke(app, ["import", "grids", str(bad_path)], env={"COLUMNS": "200"})
    assert res.exit_code == 1
    assert (data_copy / "grids.geojson").read_bytes() == before  # nothing changed
    # The same report as validate: the gap as a table row, the verdict counted, nothing written.
    assert "网格间空隙" in res.stdout and "错误 1 个，警告 0 个 → 未通过" in res.stdout
    assert "未导入任何数据" in res.stderr and "writing" not in res.stdout

    good_path = tmp_path / "good.gpkg"
    squares(3, 3).to_crs(4549).to_file(good_path, driver="GPKG")
    res = runner.invoke(app, ["import", "grids", str(good_path)])
    assert res.exit_code == 0, res.output
    snap = load_dataset(data_copy)
    assert len(snap.grids) == 9
    assert abs(snap.grids.frame.total_bounds[0] - 119.10) < 1e-6  # reprojected to WGS84


def test_import_csv_stalls_in_gcj02(data_copy: Path, tmp_path: Path) -> None:
    import prcoords

    c = prcoords.wgs_gcj(prcoords.Coords(36.71, 119.16))
    csv = tmp_path / "s.csv"
    csv.write_text(
        "code,name,services,hours,status,lon,lat\n"
        f"XLP-370705-901,新修鞋点,修鞋,08:00-18:00,active,{c.lon},{c.lat}\n",
        encoding="utf-8",
    )
    res = runner.invoke(app, ["import", "stalls", str(csv), "--crs", "gcj02"])
    assert res.exit_code == 0, res.output
    snap = load_dataset(data_copy)
    assert list(snap.stalls.codes) == ["XLP-370705-901"]
    rec = snap.stalls.records[0]
    assert abs(rec["lon"] - 119.16) < 1e-6 and abs(rec["lat"] - 36.71) < 1e-6


def test_synth_writes_a_loadable_valid_city(tmp_path: Path) -> None:
    out = tmp_path / "city"
    res = runner.invoke(app, ["synth", "--grids", "2500", "--out", str(out), "--stalls", "30"])
    assert res.exit_code == 0, res.output
    snap = load_dataset(out)
    assert len(snap.grids) == 2500 and len(snap.stalls) == 30
    res = runner.invoke(app, ["validate", str(out / "grids.geojson"), "--json"])
    assert res.exit_code == 0, res.stdout
    frame = gpd.read_file(out / "grids.geojson")
    assert shapely.coverage_is_valid(frame.geometry.to_numpy())
