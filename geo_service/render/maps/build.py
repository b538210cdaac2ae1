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
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from geo_service.core.snapshot import Snapshot
from geo_service.render.maps.assets import copy_assets
from geo_service.render.maps.basemaps import BASEMAP_LABELS, Basemap, check_available
from geo_service.render.maps.grid import grid_map
from geo_service.render.maps.overview import overview_map
from geo_service.render.maps.page import PageOptions, render_html

Progress = Callable[[str], None]

PAGES_PER_TASK = 20
"""Grid pages per worker task: small enough for a smooth progress bar, large enough that the
hand-over (a few paths and sizes) costs nothing."""

PARALLEL_MIN_PAGES = 200
"""Below this many pages a worker pool costs more (forking, imports warm) than it saves."""

MAX_WORKERS = 8


@dataclass(frozen=True)
class BuiltMap:
    path: Path
    title: str
    size: int


@dataclass(frozen=True)
class _Job:
    """What every page needs; handed to forked workers by inheritance, never pickled."""

    snapshot: Snapshot
    out: Path
    top: PageOptions  # overview (static/ next to it)
    sub: PageOptions  # pages one folder down
    grids: PageOptions
    active_only: bool


Task = tuple[str, tuple[str | float, ...]]
"""("overview", ()), ("coverage", (layer, radius_m)) or ("grids", (code, ...))."""


def _write(path: Path, text: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".html.{os.getpid()}.tmp")
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


def _run(job: _Job, task: Task) -> list[BuiltMap]:
    """Render and write the pages of one task."""
    kind, args = task
    out = job.out
    if kind == "overview":
        text = render_html(overview_map(job.snapshot, job.top), job.top)
        return [BuiltMap(out / "overview.html", "网格总览", _write(out / "overview.html", text))]
    if kind == "coverage":
        from geo_service.render.maps.coverage import coverage_map

        layer, radius_m = str(args[0]), float(args[1])
        m = coverage_map(job.snapshot, job.sub, layer, radius_m, active_only=job.active_only)
        name = f"{layer}-{radius_m:g}m"
        path = out / "coverage" / f"{name}.html"
        return [BuiltMap(path, f"覆盖分析 {name}", _write(path, render_html(m, job.sub)))]
    built = []
    for code in map(str, args):
        m = grid_map(job.snapshot, code, job.grids, overview_href="../overview.html")
        path = out / "grids" / f"{code}.html"
        built.append(BuiltMap(path, f"网格 {code}", _write(path, render_html(m, job.grids))))
    return built


_WORKER_JOB: _Job | None = None


def _init_worker(job: _Job) -> None:
    global _WORKER_JOB
    _WORKER_JOB = job


def _run_in_worker(task: Task) -> list[BuiltMap]:
    if _WORKER_JOB is None:  # pragma: no cover - the initializer always ran
        raise RuntimeError("map worker started without its job")
    return _run(_WORKER_JOB, task)


def default_workers(pages: int) -> int:
    """One worker per CPU (at most ``MAX_WORKERS``) for a large build, else none."""
    if pages < PARALLEL_MIN_PAGES or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


def build_maps(
    snapshot: Snapshot,
    out: Path,
    basemap: Basemap,
    tianditu_key: str | None = None,
    api_base: str = "",
    grid_codes: Sequence[str] | None = None,
    coverage: Sequence[tuple[str, float]] = (),
    progress: Progress | None = None,
    *,
    active_only: bool = True,
    workers: int | None = None,
) -> list[BuiltMap]:
    """Write the overview, the grid pages (``grid_codes``; None = every grid) and the coverage
    maps (``(layer, radius_m)`` pairs, active facilities only unless ``active_only=False``) for
    ``basemap`` into ``out``. ``progress(title)`` is called once per page written.

    Pages are rendered by ``workers`` forked processes (default: one per CPU for large builds);
    each inherits the snapshot, writes its pages and hands back only their paths and sizes."""
    check_available(basemap, tianditu_key)
    codes = list(snapshot.grids.codes) if grid_codes is None else list(grid_codes)
    unknown = [c for c in codes if c not in snapshot.grids.position]
    if unknown:
        raise KeyError(f"unknown grid codes: {', '.join(unknown[:10])}")
    every_grid = len(set(codes)) == len(snapshot.grids)
    out = Path(out)
    copy_assets(out)
    base = PageOptions(basemap, tianditu_key, api_base=api_base.rstrip("/"))
    job = _Job(
        snapshot=snapshot,
        out=out,
        top=replace(base, static_base="static/", grid_href="grids/{code}.html" if codes else None),
        sub=replace(base, static_base="../static/"),
        grids=replace(
            base, static_base="../static/", grid_href="{code}.html" if every_grid else None
        ),
        active_only=active_only,
    )
    tasks: list[Task] = [("overview", ())]
    tasks += [("coverage", (layer, float(r))) for layer, r in coverage]
    tasks += [
        ("grids", tuple(codes[i : i + PAGES_PER_TASK]))
        for i in range(0, len(codes), PAGES_PER_TASK)
    ]
    n_workers = default_workers(len(codes)) if workers is None else max(1, workers)
    built: list[BuiltMap] = []

    def collect(pages: list[BuiltMap]) -> None:
        built.extend(pages)
        if progress:
            for page in pages:
                progress(page.title)

    if n_workers <= 1:
        for task in tasks:
            collect(_run(job, task))
    else:
        # fork: the workers share the loaded snapshot copy-on-write (nothing pickled) and
        # start warm (every module imported).
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(
            n_workers, mp_context=ctx, initializer=_init_worker, initargs=(job,)
        ) as pool:
            for pages in pool.map(_run_in_worker, tasks):  # in order, as they finish
                collect(pages)
    _write(out / "index.html", _index(snapshot, basemap, built, out))
    return built


def coverage_plan(radii: Sequence[float]) -> list[tuple[str, float]]:
    """Coverage maps to write: stalls and vendor clusters at each radius."""
    return [(layer, float(r)) for r in radii for layer in ("stalls", "vendor_clusters")]
