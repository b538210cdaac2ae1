"""Layer files for desktop GIS (QGIS, ArcGIS Pro, SuperMap): one GeoDataFrame written as
GeoPackage, FlatGeobuf, zipped Shapefile, GeoJSON, CSV or GeoParquet, in WGS84, CGCS2000 or the
data's metric CGCS2000 zone.

GDAL (pyogrio) writes every format but Parquet, which geopandas writes through pyarrow as
GeoParquet. Text stays UTF-8 throughout: the Shapefile gets a ``.cpg`` saying so and its long
field names abbreviated through ``core.fieldnames`` (with the sidecar that maps them back); the
CSV starts with a BOM so that Excel opens its Chinese correctly. Coordinates are written in
full precision: an exported layer imported again is the same layer.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import shapely

from geo_service.core.errors import InputError, quote
from geo_service.core.fieldnames import SIDECAR_SUFFIX, shapefile_names, sidecar_text

WGS84_EPSG = 4326
CGCS2000_EPSG = 4490
DBF_TEXT_BYTES = 254  # longest text a dBASE field holds; GDAL cuts longer values


class ExportFormat(StrEnum):
    gpkg = "gpkg"
    fgb = "fgb"
    shp = "shp"
    geojson = "geojson"
    csv = "csv"
    parquet = "parquet"


@dataclass(frozen=True)
class FormatInfo:
    suffix: str  # of the file handed out
    media_type: str
    driver: str | None  # GDAL driver; None when written otherwise


FORMATS: dict[ExportFormat, FormatInfo] = {
    ExportFormat.gpkg: FormatInfo(".gpkg", "application/geopackage+sqlite3", "GPKG"),
    ExportFormat.fgb: FormatInfo(".fgb", "application/flatgeobuf", "FlatGeobuf"),
    ExportFormat.shp: FormatInfo(".zip", "application/zip", "ESRI Shapefile"),
    ExportFormat.geojson: FormatInfo(".geojson", "application/geo+json", "GeoJSON"),
    ExportFormat.csv: FormatInfo(".csv", "text/csv; charset=utf-8", None),
    ExportFormat.parquet: FormatInfo(".parquet", "application/vnd.apache.parquet", None),
}
FORMAT_HELP = (
    "gpkg (GeoPackage, default), fgb (FlatGeobuf), shp (zipped Shapefile: .shp .shx .dbf .prj, "
    ".cpg UTF-8 and the field names in .fields.csv), geojson, csv (UTF-8 with BOM for Excel: "
    "lon/lat columns for points, wkt for polygons), parquet (GeoParquet)"
)

GEOGRAPHIC: dict[str, int] = {
    "wgs84": WGS84_EPSG,
    "crs84": WGS84_EPSG,
    "ogc:crs84": WGS84_EPSG,
    "cgcs2000": CGCS2000_EPSG,
}
CRS_HELP = (
    "wgs84 (EPSG:4326, default), cgcs2000 (EPSG:4490: the same coordinates, within a metre), "
    "or the data's projected CGCS2000 3-degree Gauss-Kruger zone in metres (EPSG:4549 for "
    "Weifang); EPSG:4326 and EPSG:4490 work too"
)
_EPSG = re.compile(r"(?:epsg:)?(\d{4,5})")


class ExportError(InputError):
    """A layer, format or CRS no file can be written for: 400, naming it."""

    status = 400


def parse_format(raw: str | None) -> ExportFormat:
    if raw is None or raw == "":
        return ExportFormat.gpkg
    try:
        return ExportFormat(raw.strip().lower())
    except ValueError:
        names = ", ".join(f.value for f in ExportFormat)
        raise ExportError(f"unknown format {quote(raw)}; one of {names}", "format") from None


def crs_choices(metric_epsg: int) -> list[str]:
    return ["wgs84", "cgcs2000", "EPSG:4326", "EPSG:4490", f"EPSG:{metric_epsg}"]


def parse_crs(raw: str | None, metric_epsg: int) -> int:
    """The EPSG code of an export CRS: WGS84, CGCS2000 or the data's metric zone."""
    if raw is None or raw == "":
        return WGS84_EPSG
    key = raw.strip().lower()
    if key in GEOGRAPHIC:
        return GEOGRAPHIC[key]
    m = _EPSG.fullmatch(key)
    if m and int(m.group(1)) in (WGS84_EPSG, CGCS2000_EPSG, metric_epsg):
        return int(m.group(1))
    hint = ""
    if key in ("gcj02", "bd09"):
        hint = " (GCJ-02 and BD-09 are web-map shifts no GIS file can declare)"
    raise ExportError(
        f"unsupported crs {quote(raw)}{hint}; one of {', '.join(crs_choices(metric_epsg))}",
        "crs",
    )


@dataclass(frozen=True)
class Exportable:
    """What an export writes: the features (WGS84), a file name and a Chinese title."""

    frame: gpd.GeoDataFrame
    name: str  # ASCII: file name without suffix, and (with _ for -) the layer inside
    title: str
    notes: tuple[str, ...] = ()  # how to read it (the Shapefile's README.txt)


@dataclass(frozen=True)
class ExportFile:
    path: Path
    filename: str  # what the user's file is called
    media_type: str
    features: int


def file_stem(name: str, epsg: int) -> str:
    """``grids`` in WGS84, ``grids-epsg4549`` otherwise: the file says its CRS."""
    return name if epsg == WGS84_EPSG else f"{name}-epsg{epsg}"


def flat_frame(frame: gpd.GeoDataFrame, epsg: int) -> gpd.GeoDataFrame:
    """``frame`` in ``epsg``, with lists as ``a;b`` text (as the layer files keep them) and
    infinities as nulls (no format but Parquet holds them)."""
    out = frame.reset_index(drop=True)
    if out.crs is None:
        out = out.set_crs(WGS84_EPSG)
    out = out.to_crs(epsg) if out.crs.to_epsg() != epsg else out.copy()
    for col in out.columns:
        if col == out.geometry.name:
            continue
        values = out[col]
        if values.dtype == object:
            out[col] = values.map(_text_list)
        elif pd.api.types.is_float_dtype(values.dtype):
            out[col] = values.where(np.isfinite(values.to_numpy(dtype=float, na_value=np.nan)))
    return out


def _text_list(value: object) -> object:
    if isinstance(value, (list, tuple, np.ndarray)):
        return ";".join(map(str, value))
    return value


def write_export(data: Exportable, fmt: ExportFormat, epsg: int, folder: Path) -> ExportFile:
    """Write ``data`` into ``folder`` (the caller's, temporary) as one file of ``fmt``."""
    info = FORMATS[fmt]
    stem = file_stem(data.name, epsg)
    frame = flat_frame(data.frame, epsg)
    path = folder / f"{stem}{info.suffix}"
    layer = stem.replace("-", "_")
    if fmt is ExportFormat.shp:
        files = write_shapefile(frame, stem, folder, data)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in files:
                zf.write(f, f.name)
    elif fmt is ExportFormat.csv:
        write_csv(frame, path)
    elif fmt is ExportFormat.parquet:
        write_parquet(frame, path)
    else:
        options: dict[str, str] = {}
        if fmt is ExportFormat.gpkg:
            options = {"IDENTIFIER": data.title, "DESCRIPTION": " ".join(data.notes)}
        elif fmt is ExportFormat.geojson:
            options = {"SIGNIFICANT_FIGURES": "17"}  # every bit of each coordinate
        pyogrio.write_dataframe(
            frame, path, layer=layer, driver=info.driver, layer_options=options or None
        )
    return ExportFile(path, path.name, info.media_type, len(frame))


def write_shapefile(
    frame: gpd.GeoDataFrame, stem: str, folder: Path, data: Exportable
) -> list[Path]:
    """``stem``.shp/.shx/.dbf/.prj/.cpg (UTF-8), ``stem``.fields.csv (Shapefile name → field
    name, every field) and README.txt; their paths. ``frame`` is already flat and projected."""
    columns = [c for c in frame.columns if c != frame.geometry.name]
    names = shapefile_names(columns)
    shp = folder / f"{stem}.shp"
    pyogrio.write_dataframe(frame.rename(columns=names), shp, encoding="UTF-8")
    side = folder / f"{stem}{SIDECAR_SUFFIX}"
    side.write_text(sidecar_text(names), encoding="utf-8-sig")
    readme = folder / "README.txt"
    readme.write_text(_readme(frame, names, stem, data), encoding="utf-8")
    parts = [shp.with_suffix(s) for s in (".shp", ".shx", ".dbf", ".prj", ".cpg")]
    return [p for p in parts if p.exists()] + [side, readme]


def _too_long(frame: gpd.GeoDataFrame, columns: list[str]) -> list[str]:
    """Text fields with a value longer than a dBASE field holds."""
    out = []
    for col in columns:
        values = frame[col]
        if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
            size = values.dropna().map(lambda v: len(str(v).encode("utf-8")))
            if len(size) and int(size.max()) > DBF_TEXT_BYTES:
                out.append(col)
    return out


def _readme(frame: gpd.GeoDataFrame, names: dict[str, str], stem: str, data: Exportable) -> str:
    crs = pyproj.CRS.from_user_input(frame.crs)
    renamed = [(short, full) for full, short in names.items() if short != full]
    lines = [
        f"{data.title} {stem}",
        f"要素 features: {len(frame)}",
        f"坐标系 CRS: EPSG:{crs.to_epsg()} {crs.name}",
        "编码 encoding: UTF-8 (.cpg)",
        "",
        "Shapefile 字段名最多 10 个字节，较长的字段名已缩写（完整对照见 "
        f"{stem}{SIDECAR_SUFFIX}）；geo-service import/validate 读取时自动还原。",
        "Shapefile field names hold at most 10 bytes; longer ones are abbreviated (all names in "
        f"{stem}{SIDECAR_SUFFIX}); geo-service import/validate map them back.",
        "",
    ]
    lines += [f"  {short:<12} {full}" for short, full in renamed] or ["  (none)"]
    cut = _too_long(frame, list(names))
    if cut:
        lines += [
            "",
            f"超过 {DBF_TEXT_BYTES} 字节的文本已被截断 / text over {DBF_TEXT_BYTES} bytes is cut: "
            + ", ".join(names[c] for c in cut)
            + " (GeoPackage keeps it whole)",
        ]
    if data.notes:
        lines += ["", *data.notes]
    return "\r\n".join(lines) + "\r\n"


def write_csv(frame: gpd.GeoDataFrame, path: Path) -> None:
    """Points as lon/lat (x/y in a projected CRS) columns, anything else as a wkt column;
    UTF-8 with a BOM (Excel reads a BOM-less file as the system's GBK)."""
    geoms = frame.geometry.to_numpy()
    table = pd.DataFrame(frame.drop(columns=frame.geometry.name))
    kinds = shapely.get_type_id(geoms[~shapely.is_missing(geoms)])
    geographic = frame.crs is not None and frame.crs.is_geographic
    if len(kinds) and bool(np.all(kinds == shapely.GeometryType.POINT)):
        x_col, y_col = ("lon", "lat") if geographic else ("x", "y")
        table[x_col] = shapely.get_x(geoms)
        table[y_col] = shapely.get_y(geoms)
    else:
        table["wkt"] = shapely.to_wkt(geoms, rounding_precision=-1)
    table.to_csv(path, index=False, encoding="utf-8-sig")


def write_parquet(frame: gpd.GeoDataFrame, path: Path) -> None:
    """GeoParquet (WKB, with each row's bbox for filtered reads); text columns as strings
    even when empty (an all-null column would have Arrow's null type)."""
    out = frame.copy()
    for col in out.columns:
        if col != out.geometry.name and out[col].dtype == object:
            out[col] = out[col].astype(pd.StringDtype(na_value=np.nan))
    out.to_parquet(path, index=False, write_covering_bbox=True)
