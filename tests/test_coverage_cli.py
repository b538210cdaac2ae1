"""`geo-service coverage`: figures of active facilities by default, the gap pieces (table,
--json, --gaps export), and the report (--out)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from geo_service.cli.main import app
from geo_service.core.snapshot import Snapshot
from tests import gap_city
from tests.conftest import DATA_DIR


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("GEO_SERVICE_DATA_DIR", str(DATA_DIR))
    return CliRunner()


def test_report_files(runner: CliRunner, tmp_path: Path, snapshot: Snapshot) -> None:
    out = tmp_path / "shoes.html"
    args = [
        "coverage",
        "--layer",
        "stalls",
        "--radius",
        "500",
        "--by",
        "community",
        "--service",
        "修鞋",
        "--out",
        str(out),
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    csv = pd.read_csv(tmp_path / "shoes.csv", dtype={"code": str})
    assert len(csv) == snapshot.grids.frame["community_code"].nunique()
    # Whole square metres in the files (tests/test_coverage_report.py checks the figures).
    area = snapshot.grids.index.area_m2.sum()
    assert csv["area_m2"].sum() == pytest.approx(area, abs=len(csv))
    assert ((csv["covered_m2"] >= 0) & (csv["covered_m2"] <= csv["area_m2"])).all()
    assert 0 < csv["covered_m2"].sum() < csv["area_m2"].sum()
    units = json.loads((tmp_path / "shoes.geojson").read_text())
    assert len(units["features"]) == len(csv)
    assert {"code", "name", "area_pct", "population_pct"} <= set(units["features"][0]["properties"])
    gaps = json.loads((tmp_path / "shoes-gaps.geojson").read_text())
    assert gaps["features"] and "population" in gaps["features"][0]["properties"]
    assert (tmp_path / "shoes.pdf").stat().st_size > 0
    assert (tmp_path / "shoes-map.html").stat().st_size > 0
    page = out.read_text()
    assert "<iframe" in page and "<svg" in page  # the interactive map, the printed one
    assert "小蓝棚（修鞋） 500 米覆盖分析报告" in page and "各街道覆盖率" in page
    # Self-contained: no scripts, stylesheets or images fetched from anywhere.
    assert not re.search(r'(src|href)="https?://', page)
    assert f"{csv['population'].sum():,.0f}".replace(",", "") in page.replace(",", "")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--radius", "0"], "radius"),
        (["--radius", "-5"], "radius"),
        (["--radius", "1000", "--by", "province"], "by"),
        (["--radius", "1000", "--service", "理发"], "service"),
    ],
)
def test_bad_options(runner: CliRunner, tmp_path: Path, extra: list[str], message: str) -> None:
    res = runner.invoke(
        app, ["coverage", "--layer", "stalls", *extra, "--out", str(tmp_path / "x.html")]
    )
    assert res.exit_code == 2
    assert message in res.output
    assert not (tmp_path / "x.html").exists()


@pytest.fixture
def gap_city_cli(monkeypatch: pytest.MonkeyPatch) -> Snapshot:
    """The CLI on tests/gap_city.py (one active stall, one suspended), figures worked by hand."""
    snap = gap_city.city()
    monkeypatch.setattr("geo_service.cli.coverage.load_snapshot", lambda settings: snap)
    return snap


def run_json(args: list[str]) -> dict:
    res = CliRunner().invoke(app, ["coverage", "--layer", "stalls", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)  # nothing but the JSON on stdout (progress goes to stderr)


def test_active_only_by_default_and_gap_pieces(gap_city_cli: Snapshot, tmp_path: Path) -> None:
    g = gap_city
    radius = ["--radius", f"{g.R:g}"]
    active = run_json(radius)
    every = run_json([*radius, "--include-inactive"])
    assert (active["facilities"], every["facilities"]) == (1, 2)
    assert (active["include_inactive"], every["include_inactive"]) == (False, True)
    disc_tol = 2 * math.pi * g.R * 0.1
    gained = every["overall"]["covered_m2"] - active["overall"]["covered_m2"]
    assert gained == pytest.approx(g.BLOCK_COVERED_BY_SUSPENDED, abs=disc_tol)
    gaps = active["gaps"]
    pieces = gaps["pieces"]
    assert [p["gap_id"] for p in pieces] == ["G0001", "G0002", "G0003"]
    assert [p["grid_name"] for p in pieces] == ["网格1", "网格2", "网格1"]
    assert [p["area_m2"] for p in pieces] == pytest.approx(
        [g.STRIP_WEST, g.BLOCK.area, g.STRIP_EAST], abs=disc_tol
    )
    assert pieces[1]["nearest_m"] == pytest.approx(g.BLOCK_NEAREST, abs=0.1)
    assert (gaps["dropped"], gaps["min_area_m2"]) == (2, 1000)
    assert every["gaps"]["dropped"] == 6 and len(every["gaps"]["pieces"]) == 2
    # A lower threshold lists the slivers; --gaps writes every piece, rounded.
    csv_path, geojson_path = tmp_path / "gaps.csv", tmp_path / "gaps.geojson"
    low = run_json([*radius, "--min-area", "100", "--gaps", str(csv_path)])
    assert low["gaps"]["dropped"] == 0 and len(low["gaps"]["pieces"]) == 5
    table = pd.read_csv(csv_path, dtype={"grid_code": str}, encoding="utf-8-sig")
    assert table["gap_id"].tolist() == [p["gap_id"] for p in low["gaps"]["pieces"]]
    assert table["area_m2"].tolist() == [p["area_m2"] for p in low["gaps"]["pieces"]]
    assert (table["area_m2"] * 10 % 1 == 0).all()  # one decimal, not 16 digits
    run_json([*radius, "--gaps", str(geojson_path)])
    features = json.loads(geojson_path.read_text(encoding="utf-8"))["features"]
    assert [f["properties"]["gap_id"] for f in features] == ["G0001", "G0002", "G0003"]


def test_summary_and_table_in_chinese(gap_city_cli: Snapshot) -> None:
    res = CliRunner().invoke(
        app, ["coverage", "--layer", "stalls", "--radius", f"{gap_city.R:g}", "--top", "2"]
    )
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "在用小蓝棚 1 处" in out and "未覆盖片区 3 处" in out and "2 处小于 1,000 m²" in out
    assert "G0002" in out and "G0003" not in out  # --top 2
    assert "1,900" in out  # the block's distance to the active stall


def test_bad_gap_options(gap_city_cli: Snapshot, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["coverage", "--layer", "stalls", "--radius", "300"]
    res = runner.invoke(app, [*base, "--gaps", str(tmp_path / "gaps.txt")])
    assert res.exit_code == 2 and "--gaps" in res.output
    res = runner.invoke(app, [*base, "--min-area", "1e12"])
    assert res.exit_code == 2 and "min-area" in res.output


def test_maps_build_on_workers_counts_active_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two forked workers write the same pages as one process; coverage maps count the active
    stall only unless --include-inactive."""
    snap = gap_city.city()
    monkeypatch.setattr("geo_service.cli.maps.load_snapshot", lambda settings: snap)
    runner = CliRunner()
    pages = {}
    for name, extra in (("one", ["--workers", "1"]), ("two", ["--workers", "2"])):
        out = tmp_path / name
        args = ["maps", "build", "--basemap", "osm", "--radius", "300", "--out", str(out)]
        res = runner.invoke(app, [*args, *extra])
        assert res.exit_code == 0, res.output
        pages[name] = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html"))
        index = (out / "index.html").read_text(encoding="utf-8")
        assert index.index("overview.html") < index.index("coverage/") < index.index("grids/")
    assert pages["one"] == pages["two"]
    assert {f"grids/{c}.html" for c in snap.grids.codes} <= set(pages["two"])
    page = (tmp_path / "two" / "coverage" / "stalls-300m.html").read_text(encoding="utf-8")
    assert "1 处在用（暂停、迁址 1 处未计入）" in page and "G0003" in page
    out = tmp_path / "all"
    args = ["maps", "build", "--basemap", "osm", "--radius", "300", "--grids", "none"]
    res = runner.invoke(app, [*args, "--include-inactive", "--out", str(out)])
    assert res.exit_code == 0, res.output
    page = (out / "coverage" / "stalls-300m.html").read_text(encoding="utf-8")
    assert "2 处（含暂停、迁址，不含撤销）" in page and "G0003" not in page
