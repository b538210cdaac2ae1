"""``geo-service locate-file``: CSV, GeoParquet and GeoPackage inputs of a few thousand points,
read in several partitions, located in this process, by a pool of local processes and on a
local 2-worker Dask cluster; every code equal to the snapshot's tree locate (itself checked
against PostGIS in test_postgis_locate.py), the hierarchy read from data/ with json alone, and a
sample of points against PostGIS ``ST_Covers`` (smallest code on shared edges)."""

from __future__ import annotations

import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import prcoords
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pyogrio
import pyproj
import pytest
import shapely
from typer.testing import CliRunner

from geo_service.analysis.locatefile import (
    CODE_COLUMNS,
    LocateFileError,
    LocateOptions,
    locate_file,
)
from geo_service.cli.main import app
from geo_service.core.crs import PointCRS
from geo_service.core.schema import LayerName
from geo_service.core.snapshot import Snapshot, build_snapshot
from tests import rawdata
from tests.pgref import load_table
from tests.services import dask_cluster

BATCH = 1_000  # rows per partition: the files below hold 3 to 4 of them


@pytest.fixture(scope="module")
def snap(snapshot: Snapshot) -> Snapshot:
    """The default grids in a snapshot of this module's own: locate_file builds its index's
    cell table, which the shared snapshot keeps as it was."""
    return build_snapshot({LayerName.grids: snapshot.grids.frame}, name="t", version="1")


@pytest.fixture(scope="module")
def points(snapshot: Snapshot) -> pd.DataFrame:
    """Random points over the city and beyond, plus grid corners and edge midpoints (shared by
    several grids: the smallest code must win), with their expected codes."""
    rng = np.random.default_rng(13)
    minx, miny, maxx, maxy = snapshot.bounds
    n = 2_600
    lon = rng.uniform(minx - 0.01, maxx + 0.01, n)
    lat = rng.uniform(miny - 0.01, maxy + 0.01, n)
    geoms = snapshot.grids.index.geoms[rng.choice(len(snapshot.grids), 60, replace=False)]
    corners = np.unique(shapely.get_coordinates(geoms), axis=0)
    mids = (corners[:-1] + corners[1:]) / 2
    lon = np.concatenate([lon, corners[:, 0], mids[:, 0]])
    lat = np.concatenate([lat, corners[:, 1], mids[:, 1]])
    idx = snapshot.grids.index.locate_tree(lon, lat)
    props = rawdata.properties("grids")
    frame = pd.DataFrame({"id": np.arange(len(lon)), "名称": [f"点{i}" for i in range(len(lon))]})
    frame["lon"], frame["lat"] = lon, lat
    codes = [str(snapshot.grids.codes[i]) if i >= 0 else None for i in idx]
    frame.attrs["expected"] = {
        out: [props[c][col] if c else None for c in codes] for out, col in CODE_COLUMNS.items()
    }
    return frame


@pytest.fixture(scope="module")
def files(points: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same points as CSV (lon/lat columns), GeoParquet and GeoPackage (geometry)."""
    root = tmp_path_factory.mktemp("locate_file")
    attrs = points[["id", "名称", "lon", "lat"]]
    csv = root / "points.csv"
    pacsv.write_csv(pa.Table.from_pandas(attrs, preserve_index=False), csv)  # round-trip floats
    geo = gpd.GeoDataFrame(
        points[["id", "名称"]], geometry=shapely.points(points["lon"], points["lat"]), crs=4326
    )
    parquet = root / "points.parquet"
    geo.to_parquet(parquet)
    gpkg = root / "points.gpkg"
    pyogrio.write_dataframe(geo.rename_geometry("geom"), gpkg, layer="cases")
    return {"csv": csv, "parquet": parquet, "gpkg": gpkg}


def expected(points: pd.DataFrame) -> dict[str, list[str | None]]:
    """The codes of these rows: each grid's own hierarchy, as data/ says."""
    rows = points.index.to_numpy()
    return {out: [codes[i] for i in rows] for out, codes in points.attrs["expected"].items()}


def read_csv(path: Path) -> pa.Table:
    """A CSV as text (codes stay strings; an empty field is None)."""
    names = pacsv.read_csv(path).column_names
    return pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=True
        ),
    )


def codes_of(table: pa.Table) -> dict[str, list[str | None]]:
    return {name: table.column(name).to_pylist() for name in CODE_COLUMNS}


def test_csv_in_partitions_matches_the_index_and_postgis(
    snap: Snapshot, points: pd.DataFrame, files: dict[str, Path], tmp_path: Path,
    pg: psycopg.Connection,
) -> None:  # fmt: skip
    out = tmp_path / "located.csv"
    seen: list[tuple[int, float | None]] = []
    summary = locate_file(
        snap,
        files["csv"],
        out,
        LocateOptions(batch_rows=BATCH, workers=1),
        lambda rows, frac: seen.append((rows, frac)),
    )
    assert summary.rows == len(points) and summary.partitions >= 3
    assert [r for r, _ in seen] == sorted(r for r, _ in seen) and seen[-1][0] == len(points)
    assert seen[-1][1] == pytest.approx(1.0)  # the bar reaches the end of the file
    got = read_csv(out)
    # The input's columns come back unchanged, in order, then the four codes.
    assert got.column_names == ["id", "名称", "lon", "lat", *CODE_COLUMNS]
    assert got.column("id").to_pylist() == [str(i) for i in points["id"]]
    assert got.column("名称").to_pylist() == points["名称"].tolist()
    assert [float(x) for x in got.column("lon").to_pylist()] == points["lon"].tolist()
    assert codes_of(got) == expected(points)
    assert summary.located == sum(c is not None for c in expected(points)["grid_code"])
    assert 0 < summary.located < len(points)

    # PostGIS on a sample: every corner and edge midpoint, and 300 random points.
    grids = snap.grids
    load_table(pg, "lf_grids", list(grids.codes), grids.frame.geometry.to_numpy())
    sample = np.r_[np.arange(300), np.arange(2_600, len(points))]
    pts = shapely.points(points["lon"].to_numpy()[sample], points["lat"].to_numpy()[sample])
    load_table(pg, "lf_points", [str(i) for i in sample], pts)
    rows = pg.execute(
        "SELECT p.code::int, (SELECT min(g.code) FROM lf_grids g WHERE ST_Covers(g.geom, p.geom))"
        " FROM lf_points p"
    ).fetchall()
    ours = codes_of(got)["grid_code"]
    assert len(rows) == len(sample)
    assert [(i, ours[i]) for i, _ in rows] == [(i, code) for i, code in rows]


def test_geoparquet_on_local_processes(
    snap: Snapshot, points: pd.DataFrame, files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "located.parquet"
    summary = locate_file(snap, files["parquet"], out, LocateOptions(batch_rows=BATCH, workers=2))
    assert summary.partitions >= 3 and summary.where == "2 local processes"
    back = gpd.read_parquet(out)  # a GeoParquet file geopandas reads: geometry and CRS kept
    assert back.crs.to_epsg() == 4326
    assert shapely.equals(
        back.geometry.to_numpy(), shapely.points(points["lon"], points["lat"])
    ).all()
    assert back["id"].tolist() == points["id"].tolist()
    assert codes_of(pa.Table.from_pandas(back.drop(columns="geometry"))) == expected(points)


def test_geopackage_layer_to_geopackage(
    snap: Snapshot, points: pd.DataFrame, files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "located.gpkg"
    summary = locate_file(snap, files["gpkg"], out, LocateOptions(batch_rows=BATCH, workers=1))
    assert summary.partitions >= 3
    info = pyogrio.read_info(out)
    assert info["layer_name"] == "located" and info["geometry_type"] == "Point"
    assert info["crs"] == "EPSG:4326" and info["features"] == len(points)
    back = pyogrio.read_dataframe(out)
    assert back["名称"].tolist() == points["名称"].tolist()
    got = {c: [None if pd.isna(v) else v for v in back[c]] for c in CODE_COLUMNS}
    assert got == expected(points)


def test_other_crs_columns_and_encodings(
    snap: Snapshot, points: pd.DataFrame, tmp_path: Path
) -> None:
    """GCJ-02 x/y columns in a GBK CSV (converted by prcoords, another implementation), and a
    GeoPackage in the metric CGCS2000 zone (EPSG:4549, by pyproj): random points only, as a
    conversion moves a point on an edge by a hair."""
    rand = points.iloc[:2_600]
    gcj = np.array(
        [prcoords.wgs_gcj((la, lo)) for lo, la in zip(rand["lon"], rand["lat"], strict=True)]
    )
    text = "编号,x,y\n" + "".join(
        f"{i},{x!r},{y!r}\n"
        for i, x, y in zip(rand["id"], gcj[:, 1].tolist(), gcj[:, 0].tolist(), strict=True)
    )
    csv = tmp_path / "gcj.csv"
    csv.write_bytes(text.encode("gbk"))
    out = tmp_path / "gcj.parquet"
    locate_file(snap, csv, out, LocateOptions(batch_rows=BATCH, crs=PointCRS.gcj02, encoding="gbk"))
    got = pq.read_table(out)
    assert got.column_names == ["编号", "x", "y", *CODE_COLUMNS]
    assert codes_of(got) == expected(rand)

    x, y = pyproj.Transformer.from_crs(4326, 4549, always_xy=True).transform(
        rand["lon"], rand["lat"]
    )
    metric = gpd.GeoDataFrame({"id": rand["id"]}, geometry=shapely.points(x, y), crs=4549)
    gpkg = tmp_path / "metric.gpkg"
    pyogrio.write_dataframe(metric, gpkg)
    out_csv = tmp_path / "metric.csv"
    locate_file(snap, gpkg, out_csv, LocateOptions(batch_rows=BATCH))
    back = read_csv(out_csv)
    assert back.column_names == ["id", "lon", "lat", *CODE_COLUMNS]  # located WGS84 lon/lat
    assert np.allclose(np.array(back.column("lon").to_pylist(), float), rand["lon"], atol=1e-8)
    assert codes_of(back) == expected(rand)


def test_dask_cluster_gives_the_in_process_result(
    snap: Snapshot, files: dict[str, Path], tmp_path: Path
) -> None:
    here = tmp_path / "here.parquet"
    locate_file(snap, files["parquet"], here, LocateOptions(batch_rows=BATCH, workers=1))
    there = tmp_path / "there.parquet"
    with dask_cluster() as cluster:
        summary = locate_file(
            snap,
            files["parquet"],
            there,
            LocateOptions(batch_rows=BATCH, scheduler=cluster.scheduler_address),
        )
    assert summary.where.startswith("Dask cluster") and summary.partitions >= 3
    assert pq.read_table(there).equals(pq.read_table(here))


def test_bad_inputs_are_named_and_leave_no_output(
    snap: Snapshot, points: pd.DataFrame, tmp_path: Path
) -> None:
    out = tmp_path / "out.csv"
    no_coords = tmp_path / "no_coords.csv"
    no_coords.write_text("id,east,north\n1,119.1,36.7\n")
    with pytest.raises(LocateFileError, match="--lon and --lat") as exc:
        locate_file(snap, no_coords, out, LocateOptions())
    assert exc.value.field == "lon"
    # A bad value in a later partition: a clear error, and no half-written output.
    rows = [
        f"{i},{x!r},{y!r}"
        for i, x, y in zip(range(3000), points["lon"], points["lat"], strict=False)
    ]
    rows[2500] = "2500,东经119度,36.7"
    bad = tmp_path / "bad.csv"
    bad.write_text("id,lon,lat\n" + "\n".join(rows) + "\n")
    with pytest.raises(LocateFileError, match="东经119度"):
        locate_file(snap, bad, out, LocateOptions(batch_rows=BATCH, workers=1))
    assert list(tmp_path.glob("*out*")) == []
    polygons = tmp_path / "polygons.gpkg"
    pyogrio.write_dataframe(snap.grids.frame[["code", "geometry"]].head(5), polygons)
    with pytest.raises(LocateFileError, match="not points"):
        locate_file(snap, polygons, out, LocateOptions())
    with pytest.raises(LocateFileError, match="unknown format"):
        locate_file(snap, no_coords, tmp_path / "out.xlsx", LocateOptions())
    header_only = tmp_path / "empty.csv"
    header_only.write_text("id,lon,lat\n")
    summary = locate_file(snap, header_only, out, LocateOptions())
    assert summary.rows == 0
    assert out.read_text().splitlines()[0].replace('"', "").split(",")[-4:] == list(CODE_COLUMNS)


def test_command_line(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    shutil.copytree(rawdata.DATA_DIR, data)
    monkeypatch.setenv("GEO_SERVICE_DATA_DIR", str(data))
    runner = CliRunner()
    out = tmp_path / "cli.csv"
    res = runner.invoke(
        app, ["locate-file", str(files["csv"]), "--out", str(out), "--workers", "1"]
    )
    assert res.exit_code == 0, res.output
    assert "located" in res.stdout and "points/s" in res.stdout
    assert pacsv.read_csv(out).num_rows == pacsv.read_csv(files["csv"]).num_rows
    res = runner.invoke(
        app, ["locate-file", str(files["csv"]), "--out", str(out), "--lon", "经度", "--lat", "lat"]
    )
    assert res.exit_code == 2 and "--lon" in res.stderr and "经度" in res.stderr
