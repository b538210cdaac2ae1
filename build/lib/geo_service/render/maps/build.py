"""Write every map as static HTML (``geo-service maps build``).

Layout of ``out/``::

    index.html                  links to every map
    overview.html
    grids/<code>.html           one page per grid
    coverage/<layer>-<r>m.html  coverage maps
    static/                     the vendored scripts/styles the pages link (relative URLs)

The pages link their assets relatively, so the folder works from any file server or straight
from disk. Data an overview loads on demand (the grids in view, for cities too large to inline)
comes from the running service at ``api_base`` (``settings.public_base_url``).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from geo_service.core.snapshot import Snapshot
from geo_service.render.maps.assets import copy_assets
from geo_service.render.maps.basemaps import BASEMAP_LABELS, Basemap, check_available
from geo_service.render.maps.grid import grid_map
from geo_service.render.maps.overview import overview_map
from geo_service.render.maps.page import PageOptions, render_html

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BuiltMap:
    path: Path
    title: str
    size: int


def _write(path: Path, text: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    data = text.encode("utf-8")
    tmp.write_bytes(data)
    tmp.replace(path)
    return len(data)


def _index(snapshot: Snapshot, basemap: Basemap, built: Sequence[BuiltMap], out: Path) -> str:
    items = "".join(
        f'<li><a href="{html.escape(b.path.relative_to(out).as_posix())}">'
        f"{html.escape(b.title)}</a> <small>({b.size / 1024:,.0f} KB)</small></li>"
        for b in built
    )
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(snapshot.name)} 地图</title></head><body>"
        f"<h1>{html.escape(snapshot.name)} 地图</h1>"
        f"<p>底图：{html.escape(BASEMAP_LABELS[basemap])}"
        f"（数据版本 {html.escape(snapshot.version)}）</p><ul>{items}</ul></body></html>"
    )


def build_maps(
    snapshot: Snapshot,
    out: Path,
    basemap: Basemap,
    tianditu_key: str | None = None,
    api_base: str = "",
    grid_codes: Sequence[str] | None = None,
    coverage: Sequence[tuple[str, float]] = (),
    progress: Progress | None = None,
) -> list[BuiltMap]:
    """Write the overview, the grid pages (``grid_codes``; None = every grid) and the coverage
    maps (``(layer, radius_m)`` pairs) for ``basemap`` into ``out``."""
    check_available(basemap, tianditu_key)
    codes = list(snapshot.grids.codes) if grid_codes is None else list(grid_codes)
    unknown = [c for c in codes if c not in snapshot.grids.position]
    if unknown:
        raise KeyError(f"unknown grid codes: {', '.join(unknown[:10])}")
    every_grid = len(set(codes)) == len(snapshot.grids)
    out = Path(out)
    copy_assets(out)
    built: list[BuiltMap] = []

    def done(path: Path, title: str, text: str) -> None:
        built.append(BuiltMap(path, title, _write(path, text)))
        if progress:
            progress(title)

    base = PageOptions(basemap, tianditu_key, api_base=api_base.rstrip("/"))
    top = replace(base, static_base="static/", grid_href="grids/{code}.html" if codes else None)
    done(out / "overview.html", "网格总览", render_html(overview_map(snapshot, top), top))
    if coverage:
        from geo_service.render.maps.coverage import coverage_map

        for layer, radius_m in coverage:
            page = replace(base, static_base="../static/")
            m = coverage_map(snapshot, page, layer, radius_m)
            name = f"{layer}-{radius_m:g}m"
            done(out / "coverage" / f"{name}.html", f"覆盖分析 {name}", render_html(m, page))
    page = replace(base, static_base="../static/", grid_href="{code}.html" if every_grid else None)
    for code in codes:
        m = grid_map(snapshot, code, page, overview_href="../overview.html")
        done(out / "grids" / f"{code}.html", f"网格 {code}", render_html(m, page))
    _write(out / "index.html", _index(snapshot, basemap, built, out))
    return built


def coverage_plan(radii: Sequence[float]) -> list[tuple[str, float]]:
    """Coverage maps to write: stalls and vendor clusters at each radius."""
    return [(layer, float(r)) for r in radii for layer in ("stalls", "vendor_clusters")]
