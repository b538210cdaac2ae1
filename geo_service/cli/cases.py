"""``geo-service cases``: escalate overdue cases now, export cases, statistics by unit.

Each command opens the configured backend through ``runtime`` (PostGIS when
``GEO_SERVICE_DATABASE_URL`` is set), exactly as the service does.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from geo_service.analysis.casestats import case_frame, case_stats, stats_csv
from geo_service.core.cases import LEVEL_TEXT, STATUS_TEXT, CaseStatus
from geo_service.core.schema import Level
from geo_service.core.settings import Settings
from geo_service.domain.caseview import local_iso, service_request
from geo_service.runtime import Runtime, open_runtime
from geo_service.storage.cases import CaseQuery

cases_app = typer.Typer(
    help="随手拍 cases: escalate overdue ones, export, statistics.", no_args_is_help=True
)
console = Console()
err = Console(stderr=True)

EXPORT_COLUMNS = {  # CSV column -> Chinese header
    "service_request_id": "案件编号",
    "service_name": "类别",
    "status_text": "状态",
    "level_text": "处置层级",
    "unit_code": "责任单元",
    "grid_code": "网格编码",
    "officer": "网格员",
    "description": "问题描述",
    "address": "地址",
    "long": "经度(WGS84)",
    "lat": "纬度(WGS84)",
    "requested_datetime": "上报时间",
    "deadline": "处置时限",
    "overdue": "已超时",
    "escalations": "升级次数",
    "reporters": "反映人数",
}


@contextmanager
def _runtime() -> Iterator[Runtime]:
    settings = Settings()
    rt = open_runtime(settings)
    try:
        rt.start(watch=False)
        yield rt
    finally:
        rt.close()


@cases_app.command("escalate")
def escalate() -> None:
    """Escalate every case past its deadline now (the service does this by itself every
    GEO_SERVICE_CASE_ESCALATION_POLL_S; run this to catch up at once, e.g. from cron)."""
    with _runtime() as rt:
        done = rt.cases.escalate_due()
    table = Table("案件编号", "升至", "责任单元", "新时限")
    for c in done:
        table.add_row(c.id, LEVEL_TEXT[c.level], c.unit_code, local_iso(c.deadline) or "")
    console.print(table)
    console.print(f"升级 {len(done)} 次")


@cases_app.command("export")
def export(
    fmt: Annotated[str, typer.Option("--format", help="csv (Chinese Excel) or geojson")] = "csv",
    out: Annotated[Path | None, typer.Option(help="Write here instead of stdout")] = None,
    status: Annotated[str | None, typer.Option(help="open or closed")] = None,
    unit: Annotated[str | None, typer.Option(help="A grid/community/street/district code")] = None,
) -> None:
    """Every case (public fields: never the reporter's phone), newest first."""
    if fmt not in ("csv", "geojson") or status not in (None, "open", "closed"):
        err.print("[red]--format is csv or geojson; --status is open or closed[/]")
        raise typer.Exit(2)
    with _runtime() as rt:
        desk = rt.cases
        q = CaseQuery(
            statuses=(CaseStatus.closed,) if status == "closed" else (),
            open_only=status == "open",
            units=(unit,) if unit else (),
            limit=10**9,
        )
        cases, _ = desk.store.query(q)
        now = desk.clock()
        base = rt.settings.public_base_url.rstrip("/")
        views = [service_request(c, desk.services, base, now) for c in cases]
    if fmt == "geojson":
        feats = [
            {
                "type": "Feature",
                "id": v["service_request_id"],
                "geometry": {"type": "Point", "coordinates": [v["long"], v["lat"]]},
                "properties": {k: val for k, val in v.items() if k != "history"},
            }
            for v in views
        ]
        data = orjson.dumps({"type": "FeatureCollection", "features": feats})
    else:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(EXPORT_COLUMNS.values())
        for v in views:
            row = [v[k] for k in EXPORT_COLUMNS]
            writer.writerow(["是" if x is True else "否" if x is False else x for x in row])
        data = ("\ufeff" + buf.getvalue()).encode("utf-8")
    if out is None:
        sys.stdout.buffer.write(data)
    else:
        out.write_bytes(data)
        err.print(f"wrote {len(views)} cases to {out}")


@cases_app.command("stats")
def stats(
    by: Annotated[Level, typer.Option(help="grid, community, street or district")] = Level.street,
    days: Annotated[int, typer.Option(min=1, max=3660, help="The last N days")] = 30,
    out: Annotated[Path | None, typer.Option(help="Also write the table as CSV here")] = None,
) -> None:
    """Counts, on-time rate, median hours to close and escalations per unit, as a table."""
    with _runtime() as rt:
        desk = rt.cases
        now = desk.clock()
        start = now - timedelta(days=days)
        cases, _ = desk.store.query(CaseQuery(start=start, limit=10**9))
        table = case_stats(case_frame(cases), rt.store.get(), by, start, None, now, desk.services)
    shown = table[table["total"] > 0]
    view = Table("单元", "名称", "案件", "未结", "超时未处置", "按时率", "结案中位(时)", "升级")
    for row in shown.itertuples(index=False):
        rate, hours = row.on_time_rate, row.median_hours_to_close
        view.add_row(
            str(row.code),
            str(row.name or ""),
            str(row.total),
            str(row.total - getattr(row, STATUS_TEXT[CaseStatus.closed])),
            str(row.overdue_open),
            "" if rate != rate else f"{rate * 100:.1f}%",  # NaN: nothing handled yet
            "" if hours != hours else f"{hours:.1f}",
            str(row.escalations),
        )
    console.print(view)
    console.print(f"{len(shown)} 个{LEVEL_TEXT[by]}有案件（近 {days} 天）")
    if out is not None:
        out.write_bytes(stats_csv(table, by))
        err.print(f"wrote {out}")
