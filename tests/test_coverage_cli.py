"""`geo-service coverage`: CSV, GeoJSON and a self-contained HTML report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from geo_service.cli.main import app
from geo_service.core.snapshot import Snapshot
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
    assert csv["area_m2"].sum() == pytest.approx(snapshot.grids.index.area_m2.sum(), rel=1e-9)
    assert ((csv["covered_m2"] >= 0) & (csv["covered_m2"] <= csv["area_m2"] + 1e-6)).all()
    assert 0 < csv["covered_m2"].sum() < csv["area_m2"].sum()
    units = json.loads((tmp_path / "shoes.geojson").read_text())
    assert len(units["features"]) == len(csv)
    assert {"code", "area_ratio", "population_ratio"} <= set(units["features"][0]["properties"])
    gaps = json.loads((tmp_path / "shoes-gaps.geojson").read_text())
    assert gaps["features"] and "population" in gaps["features"][0]["properties"]
    page = out.read_text()
    assert "data:image/png;base64," in page  # the map
    assert "<svg" in page  # the bar chart
    assert "修鞋" in page and "coverage by street" in page
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
