"""Read a layer from any file pyogrio understands, check it against its schema, report by row.

Every rejected or repaired row becomes a ``Problem``: an import never drops data silently.
Output is a GeoDataFrame in WGS84 (EPSG:4326), sorted by code, one row per valid feature.
"""

from __future__ import annotations

import codecs
import io
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

from geo_service.core.crs import PointCRS, transform_geometry
from geo_service.core.errors import InputError
from geo_service.core.fieldnames import full_names, read_sidecar
from geo_service.core.schema import SCHEMAS, Field, FieldType, LayerName, LayerSchema

Action = Literal["rejected", "repaired", "warning"]
LON_COLUMNS = ("lon", "lng", "longitude", "x")
LAT_COLUMNS = ("lat", "latitude", "y")
LIST_SEPARATORS = r"[;,；，、|]"
_LIST_SPLIT = re.compile(LIST_SEPARATORS)  # a regex per value: a one-row Series cost 1 ms


@dataclass(frozen=True)
class Problem:
    row: int | None  # 1-based feature/row number in the source, None for whole-layer problems
    code: str | None
    field: str | None
    message: str
    action: Action = "rejected"

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row is not None else "layer"
        code = f" [{self.code}]" if self.code else ""
        fld = f" {self.field}:" if self.field else ""
        return f"{where}{code}{fld} {self.message} ({self.action})"


@dataclass
class LoadReport:
    layer: str
    source: str
    rows_read: int = 0
    rows_loaded: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def rejected(self) -> list[Problem]:
        return [p for p in self.problems if p.action == "rejected"]

    @property
    def repaired(self) -> list[Problem]:
        return [p for p in self.problems if p.action == "repaired"]

    @property
    def ok(self) -> bool:
        return not self.rejected

    def add(
        self,
        rows: np.ndarray | list[int],
        codes: pd.Series | list,
        field_name: str | None,
        message: str,
        action: Action = "rejected",
    ) -> None:
        for r, c in zip(rows, codes, strict=True):
            self.problems.append(
                Problem(int(r), None if _missing(c) else str(c), field_name, message, action)
            )

    def to_dict(self) -> dict:
        return {
            "layer": self.layer,
            "source": self.source,
            "rows_read": self.rows_read,
            "rows_loaded": self.rows_loaded,
            "problems": [p.__dict__ for p in self.problems],
        }


class LayerFileError(InputError):
    """The file as a whole cannot be read as this layer (unreadable, no geometry, unknown CRS)."""


def _missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def read_file(
    path: str | Path, crs: str | None = None, layer: str | None = None
) -> gpd.GeoDataFrame:
    """Read features from a file; ``crs`` declares the system when the file cannot (CSV, GCJ-02).

    ``crs`` may be one of the web-map systems (wgs84, cgcs2000, gcj02, bd09) or any CRS pyproj
    knows ("EPSG:4549"). Files whose own CRS is set are reprojected from it unless a web-map
    system is declared (GCJ-02 data is usually labelled WGS84 in its file).
    """
    path = Path(path)
    if not path.exists():
        raise LayerFileError(f"{path}: no such file")
    try:
        if path.suffix.lower() in (".csv", ".tsv", ".txt"):
            gdf = _read_csv(path, crs)
        elif path.suffix.lower() in (".parquet", ".geoparquet"):
            gdf = gpd.read_parquet(path)  # GeoParquet (this GDAL has no Parquet driver)
        else:
            gdf = pyogrio.read_dataframe(path, layer=layer)
            if path.suffix.lower() in SHAPEFILE_SUFFIXES:
                gdf = _from_shapefile(gdf, path, layer)
    except LayerFileError:
        raise
    except Exception as exc:  # pyogrio/GDAL raise many types for unreadable input
        raise LayerFileError(f"{path}: cannot be read: {exc}") from exc
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf.geometry.name not in gdf:
        raise LayerFileError(f"{path}: has no geometry column")
    return to_wgs84_frame(gdf, crs, str(path))


SHAPEFILE_SUFFIXES = (".shp", ".dbf", ".zip", ".shz")


def _from_shapefile(gdf: gpd.GeoDataFrame, path: Path, layer: str | None) -> gpd.GeoDataFrame:
    """A Shapefile's 10-byte field names mapped back (``core.fieldnames``), and its rings
    turned back to counter-clockwise exteriors (a Shapefile stores them clockwise): a survey
    exported, edited and imported again changes only what was edited."""
    if pyogrio.read_info(path, layer=layer)["driver"] != "ESRI Shapefile":
        return gdf  # e.g. a zipped GeoPackage
    gdf = gdf.rename(columns=full_names(gdf.columns, read_sidecar(path)))
    geoms = gdf.geometry.to_numpy()
    polygonal = np.isin(shapely.get_type_id(geoms), (3, 6))
    if polygonal.any():
        geoms = geoms.copy()
        geoms[polygonal] = shapely.orient_polygons(geoms[polygonal], exterior_cw=False)
        gdf = gdf.set_geometry(gpd.GeoSeries(geoms, index=gdf.index, crs=gdf.crs))
    return gdf


def decode_text(raw: bytes, source: str) -> str:
    """Text as Chinese Excel saves it: UTF-8 with or without a BOM, UTF-16 with its BOM
    ("Unicode text"), or GBK ("CSV (逗号分隔)" on a Chinese Windows; read as GB18030, its
    superset). Strict UTF-8 first: GBK bytes are almost never valid UTF-8."""
    if raw.startswith(codecs.BOM_UTF8):
        return raw[len(codecs.BOM_UTF8) :].decode("utf-8")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise LayerFileError(
            f"{source}: neither UTF-8 nor GBK text (byte {exc.start}); save it as CSV UTF-8"
        ) from None


def _read_csv(path: Path, crs: str | None) -> gpd.GeoDataFrame:
    text = decode_text(path.read_bytes(), str(path))
    header = text.split("\n", 1)[0]
    tabbed = path.suffix.lower() == ".tsv" or ("\t" in header and "," not in header)
    df = pd.read_csv(
        io.StringIO(text), sep="\t" if tabbed else ",", dtype=str, keep_default_na=False
    )
    cols = {c.lower(): c for c in df.columns}
    lon_col = next((cols[c] for c in LON_COLUMNS if c in cols), None)
    lat_col = next((cols[c] for c in LAT_COLUMNS if c in cols), None)
    if "wkt" in cols or "geometry" in cols:
        wkt_col = cols.get("wkt", cols.get("geometry"))
        geoms = shapely.from_wkt(df[wkt_col].replace("", None), on_invalid="warn")
        df = df.drop(columns=[wkt_col])
    elif lon_col and lat_col:
        lon = pd.to_numeric(df[lon_col], errors="coerce").to_numpy()
        lat = pd.to_numeric(df[lat_col], errors="coerce").to_numpy()
        geoms = shapely.points(lon, lat)
        geoms[np.isnan(lon) | np.isnan(lat)] = None
        df = df.drop(columns=[lon_col, lat_col])
    else:
        raise LayerFileError(f"{path}: CSV needs lon/lat columns ({'/'.join(LON_COLUMNS)}) or wkt")
    if crs is None:
        raise LayerFileError(
            f"{path}: a CSV file does not say its CRS; declare it (wgs84, gcj02, ...)"
        )
    out = gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(geoms), crs=None)
    for col in out.columns:
        if col != "geometry":
            out[col] = out[col].replace("", None)
    return out


def to_wgs84_frame(gdf: gpd.GeoDataFrame, crs: str | None, source: str) -> gpd.GeoDataFrame:
    web = {c.value for c in PointCRS}
    if crs is not None and crs.lower() in web:
        gdf = gdf.set_crs(None, allow_override=True) if gdf.crs is not None else gdf
        geoms = transform_geometry(gdf.geometry.to_numpy(), crs.lower(), PointCRS.wgs84)
        return gdf.set_geometry(gpd.GeoSeries(geoms, index=gdf.index), crs=4326)
    if crs is not None:
        gdf = gdf.set_crs(crs, allow_override=True)
    if gdf.crs is None:
        if source.lower().endswith((".geojson", ".json")):
            return gdf.set_crs(4326)  # RFC 7946: GeoJSON is WGS84
        raise LayerFileError(f"{source}: the file has no CRS; declare it")
    return gdf.to_crs(4326) if gdf.crs.to_epsg() != 4326 else gdf


def validate_layer(
    gdf: gpd.GeoDataFrame, layer: LayerName | str, source: str = "<memory>", strict: bool = False
) -> tuple[gpd.GeoDataFrame, LoadReport]:
    """Check every row; return the valid rows (repaired where safe) and the report.

    ``strict`` (validate, import, upload, edits: data about to be written) rejects what a load
    of stored data only warns about, such as unreadable opening hours: a stall already stored
    stays findable, but nothing new is written with hours nobody can read."""
    schema = SCHEMAS[LayerName(layer)]
    report = LoadReport(layer=schema.name.value, source=source, rows_read=len(gdf))
    df = gdf.reset_index(drop=True).copy()
    rownum = np.arange(1, len(df) + 1)
    bad = np.zeros(len(df), dtype=bool)

    missing_cols = [f.name for f in schema.fields if f.required and f.name not in df.columns]
    if missing_cols:
        report.problems.append(
            Problem(None, None, None, f"missing required columns: {', '.join(missing_cols)}")
        )
        return gpd.GeoDataFrame(
            columns=[*schema.field_names(), "geometry"], geometry="geometry", crs=4326
        ), report
    for f in schema.fields:
        if f.name not in df.columns:
            df[f.name] = None

    codes = df[schema.code_field.name].map(lambda v: None if _missing(v) else _as_text(v))
    df[schema.code_field.name] = codes
    for f in schema.fields:
        df[f.name], fbad = _check_field(df[f.name], f, rownum, codes, report, strict)
        bad |= fbad
    bad |= _check_rows(df, schema, rownum, codes, report, bad)

    df, gbad = _check_geometry(df, schema, rownum, codes, report)
    bad |= gbad

    dup = codes.duplicated(keep="first") & codes.notna() & ~bad
    if dup.any():
        first_row = {c: r for c, r in zip(codes[~dup], rownum[~dup], strict=True)}
        for r, c in zip(rownum[dup], codes[dup], strict=True):
            report.problems.append(
                Problem(
                    int(r),
                    c,
                    schema.code_field.name,
                    f"duplicate code (first used on row {first_row.get(c)})",
                )
            )
        bad |= dup.to_numpy()

    keep = df.loc[~bad, [*schema.field_names(), *_extra_columns(df, schema), "geometry"]]
    keep = gpd.GeoDataFrame(keep, geometry="geometry", crs=4326)
    keep = keep.sort_values(schema.code_field.name, kind="stable").reset_index(drop=True)
    report.rows_loaded = len(keep)
    return keep, report


def _extra_columns(df: pd.DataFrame, schema: LayerSchema) -> list[str]:
    known = {*schema.field_names(), "geometry"}
    return [c for c in df.columns if c not in known]


def _as_text(value: object) -> str:
    if isinstance(value, (pd.Timestamp, date)):
        # GDAL reads "2022-07-14" as a date; keep it the plain ISO date it was.
        midnight = getattr(value, "hour", 0) == 0 and getattr(value, "minute", 0) == 0
        return value.isoformat()[:10] if midnight else value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _as_list(value: object) -> list[str] | None:
    if _missing(value) if not isinstance(value, (list, tuple, np.ndarray)) else False:
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        items = [str(v).strip() for v in value]
    else:
        items = [s.strip() for s in _LIST_SPLIT.split(str(value))]
    items = [s for s in items if s]
    return items or None


def _check_field(
    col: pd.Series,
    f: Field,
    rownum: np.ndarray,
    codes: pd.Series,
    report: LoadReport,
    strict: bool = False,
) -> tuple[pd.Series, np.ndarray]:
    bad = np.zeros(len(col), dtype=bool)
    if f.type is FieldType.text_list:
        values = col.map(_as_list)
    elif f.type in (FieldType.integer, FieldType.number):
        present = ~col.map(_missing)
        values = pd.to_numeric(col.where(present), errors="coerce")
        unparsable = present & values.isna()
        if f.type is FieldType.integer:
            unparsable |= present & values.notna() & (values % 1 != 0)
        if unparsable.any():
            report.add(
                rownum[unparsable],
                codes[unparsable],
                f.name,
                f"not a {'whole ' if f.type is FieldType.integer else ''}number",
            )
            bad |= unparsable.to_numpy()
        # Beyond 2^53 a float (how pandas parses numbers) no longer holds every whole number;
        # infinities are no measurement either. Both are refused, never cast into garbage.
        limit = 2.0**53 if f.type is FieldType.integer else np.inf
        huge = values.notna() & ~(values.abs() < limit) & ~unparsable
        if huge.any():
            report.add(rownum[huge], codes[huge], f.name, "out of range")
            bad |= huge.to_numpy()
            values = values.where(~huge)
        if f.minimum is not None:
            low = values.notna() & (values < f.minimum)
            if low.any():
                report.add(rownum[low], codes[low], f.name, f"below {f.minimum:g}")
                bad |= low.to_numpy()
        if f.type is FieldType.integer:
            values = values.astype("Int64")
    else:
        values = col.map(lambda v: None if _missing(v) else _as_text(v))
    if f.type in (FieldType.text, FieldType.text_list):
        # A NUL byte is no text (PostgreSQL cannot even store it): refuse it on every backend.
        nul = values.map(
            lambda v: (
                "\x00" in (v if isinstance(v, str) else "".join(map(str, v)))
                if isinstance(v, (str, list))
                else False
            )
        ).to_numpy(dtype=bool)
        if nul.any():
            report.add(rownum[nul], codes[nul], f.name, "contains a NUL character")
            bad |= nul

    isnull = (
        values.isna().to_numpy()
        if f.type is not FieldType.text_list
        else values.map(lambda v: v is None).to_numpy()
    )
    if f.required:
        miss = isnull & ~bad
        if miss.any():
            report.add(rownum[miss], codes[miss], f.name, "missing required value")
            bad |= miss
    rx = f.regex()
    if rx is not None:
        nomatch = ~isnull & ~values.astype(object).map(lambda v: bool(rx.match(str(v)))).to_numpy()
        if nomatch.any():
            report.add(rownum[nomatch], codes[nomatch], f.name, f"does not match {f.pattern}")
            bad |= nomatch
    if f.choices is not None:
        allowed = set(f.choices)
        if f.type is FieldType.text_list:
            wrong = values.map(lambda v: v is not None and not set(v) <= allowed).to_numpy()
        else:
            wrong = ~isnull & ~values.isin(allowed).to_numpy()
        if wrong.any():
            report.add(rownum[wrong], codes[wrong], f.name, f"not one of {', '.join(f.choices)}")
            bad |= wrong
    action = "rejected" if strict else f.check_action
    for check in f.checks:
        msgs = values.map(lambda v, c=check: None if v is None else c(v))
        failed = msgs.notna().to_numpy() & ~isnull
        for r, c, m in zip(rownum[failed], codes[failed], msgs[failed], strict=True):
            report.problems.append(Problem(int(r), c, f.name, str(m), action))
        if action == "rejected":
            bad |= failed
    return values, bad


def _check_rows(
    df: pd.DataFrame,
    schema: LayerSchema,
    rownum: np.ndarray,
    codes: pd.Series,
    report: LoadReport,
    bad: np.ndarray,
) -> np.ndarray:
    """The schema's checks across fields, on rows whose fields passed."""
    out = np.zeros(len(df), dtype=bool)
    if not schema.row_checks or not len(df):
        return out
    names = schema.field_names()
    for pos, row in enumerate(df[names].to_dict("records")):
        if bad[pos]:
            continue
        for rc in schema.row_checks:
            message = rc.check(row)
            if message is None:
                continue
            code = codes.iloc[pos]
            report.problems.append(
                Problem(
                    int(rownum[pos]),
                    None if _missing(code) else str(code),
                    rc.field,
                    message,
                    rc.action,
                )
            )
            if rc.action == "rejected":
                out[pos] = True
                break
    return out


def _check_geometry(
    df: pd.DataFrame, schema: LayerSchema, rownum: np.ndarray, codes: pd.Series, report: LoadReport
) -> tuple[pd.DataFrame, np.ndarray]:
    geoms = np.asarray(df.geometry.to_numpy(), dtype=object)
    bad = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    if bad.any():
        report.add(rownum[bad], codes[bad], "geometry", "missing or empty geometry")
    gtype = shapely.get_type_id(geoms)
    want = (3, 6) if schema.geometry == "polygon" else (0,)
    wrong = ~bad & ~np.isin(gtype, want)
    if wrong.any():
        report.add(rownum[wrong], codes[wrong], "geometry", f"geometry is not a {schema.geometry}")
        bad |= wrong
    ok = ~bad
    bounds = np.full((len(geoms), 4), np.nan)
    if ok.any():
        bounds[ok] = shapely.bounds(geoms[ok])
    with np.errstate(invalid="ignore"):
        outside = ok & ~(
            (bounds[:, 0] >= -180)
            & (bounds[:, 2] <= 180)
            & (bounds[:, 1] >= -90)
            & (bounds[:, 3] <= 90)
        )
    if outside.any():
        report.add(
            rownum[outside],
            codes[outside],
            "geometry",
            "coordinates outside lon ±180 / lat ±90: wrong or undeclared CRS?",
        )
        bad |= outside
    ok = ~bad
    invalid = ok & ~shapely.is_valid(geoms)
    if invalid.any():
        reasons = shapely.is_valid_reason(geoms[invalid])
        fixed = shapely.make_valid(geoms[invalid])
        if schema.geometry == "polygon":
            fixed = _polygonal_part(fixed)
        for r, c, why, g in zip(rownum[invalid], codes[invalid], reasons, fixed, strict=True):
            if g is None or shapely.is_empty(g):
                report.problems.append(
                    Problem(int(r), c, "geometry", f"invalid ({why}), not repairable")
                )
            else:
                report.problems.append(
                    Problem(
                        int(r),
                        c,
                        "geometry",
                        f"invalid ({why}), repaired with make_valid",
                        "repaired",
                    )
                )
        geoms[invalid] = fixed
        unrepaired = np.zeros(len(geoms), dtype=bool)
        unrepaired[invalid] = shapely.is_missing(fixed) | shapely.is_empty(fixed)
        bad |= unrepaired
    df = df.copy()
    df["geometry"] = geoms
    return df, bad


def _polygonal_part(geoms: np.ndarray) -> np.ndarray:
    """Keep only the polygonal part of make_valid's output (it may add lines or points)."""
    out = np.empty(len(geoms), dtype=object)
    for i, g in enumerate(geoms):
        if g is None:
            out[i] = None
            continue
        if shapely.get_type_id(g) in (3, 6):
            out[i] = g
            continue
        parts = [p for p in shapely.get_parts(g) if shapely.get_type_id(p) in (3, 6)]
        out[i] = shapely.union_all(parts) if parts else None
    return out


def load_layer(
    path: str | Path,
    layer: LayerName | str,
    crs: str | None = None,
    file_layer: str | None = None,
    strict: bool = False,
) -> tuple[gpd.GeoDataFrame, LoadReport]:
    gdf = read_file(path, crs=crs, layer=file_layer)
    return validate_layer(gdf, layer, source=str(path), strict=strict)
