"""The data the OGC API tests serve: a copy of the bundled dataset in which some grids have no
officer or no household count (nulls, for CQL2's three-valued logic) and one officer's name is
hostile HTML (escaping), plus four cases filed at known Beijing times (``datetime``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio

from geo_service.core.snapshot import Snapshot
from geo_service.core.workcalendar import SHANGHAI
from geo_service.domain.casedesk import CaseDesk
from geo_service.domain.cases import Report
from tests.backends import copy_data

HOSTILE = '<script>alert("网格")</script>&'
NO_OFFICER_EVERY = 7  # every 7th grid: no officer name nor phone
NO_HOUSEHOLDS_EVERY = 11  # every 11th grid: households unknown


def bj(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)  # type: ignore[misc]


@dataclass(frozen=True)
class FiledCase:
    at: datetime  # Beijing time of the report
    service_code: str
    description: str
    grid: int  # row of the grid (by code) the report lies in
    address: str | None


CASES = (
    FiledCase(bj(2026, 3, 2, 9, 0), "JM01", "门口占道摆摊", 0, "健康西街 1 号"),
    FiledCase(bj(2026, 3, 5, 14, 30), "HW01", "垃圾桶满溢", 100, None),
    FiledCase(bj(2026, 3, 5, 20, 0), "JM02", "<script>alert(1)</script> 流动摊贩", 500, "东风街"),
    FiledCase(bj(2026, 3, 10, 10, 0), "SS01", "井盖缺损", 900, None),
)
CLOCK_AFTER = bj(2026, 3, 10, 10, 5)  # the service's clock while the tests read


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def ogc_dataset(root: Path) -> Path:
    """The bundled data copied to ``root`` with the nulls and the hostile name written in."""
    data = copy_data(root)
    path = data / "grids.geojson"
    grids = gpd.read_file(path).sort_values("code").reset_index(drop=True)
    rows = grids.index.to_numpy()
    grids["officer_name"] = grids["officer_name"].astype(object)
    grids["officer_phone"] = grids["officer_phone"].astype(object)
    grids.loc[rows % NO_OFFICER_EVERY == 3, ["officer_name", "officer_phone"]] = None
    grids["households"] = grids["households"].astype("Int64")
    grids.loc[rows % NO_HOUSEHOLDS_EVERY == 5, "households"] = pd.NA
    grids.loc[1, "officer_name"] = HOSTILE
    pyogrio.write_dataframe(grids, path, driver="GeoJSON")
    return data


def stored_grids(data: Path) -> gpd.GeoDataFrame:
    """The grids as stored (what the filters are checked against), sorted by code."""
    return gpd.read_file(data / "grids.geojson").sort_values("code").reset_index(drop=True)


def file_cases(desk: CaseDesk, snap: Snapshot) -> list[str]:
    """File ``CASES`` at their times (inside their grids); returns their ids in that order."""
    clock = Clock(CASES[0].at)
    desk.clock = clock
    points = snap.grids.frame.geometry.representative_point().to_numpy()
    ids = []
    for c in CASES:
        clock.at = c.at
        p = points[c.grid]
        report = Report(c.service_code, c.description, float(p.x), float(p.y), "wgs84", c.address)
        ids.append(desk.file(report).case.id)
    clock.at = CLOCK_AFTER
    return ids
