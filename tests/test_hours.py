"""Opening hours: hand-worked cases in Asia/Shanghai time, and bad strings reported at load."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import geopandas as gpd
import pytest
import shapely

from geo_service.core import hours
from geo_service.core.layers import load_layer, validate_layer
from geo_service.storage.dataset import load_dataset

SH = ZoneInfo("Asia/Shanghai")


def at(text: str) -> datetime:
    """A Shanghai wall-clock time. 2025-03-03 is a Monday."""
    return datetime.fromisoformat(text).replace(tzinfo=SH)


# (hours, moment, open?) — worked out by hand from the OSM opening_hours specification.
CASES = [
    # a plain day span: before, at opening, during, last minute, at closing, after
    ("08:00-18:00", "2025-03-03 07:59", False),
    ("08:00-18:00", "2025-03-03 08:00", True),
    ("08:00-18:00", "2025-03-03 12:00", True),
    ("08:00-18:00", "2025-03-03 17:59", True),
    ("08:00-18:00", "2025-03-03 18:00", False),
    ("08:00-18:00", "2025-03-03 23:00", False),
    # two spans with a lunch break
    ("07:30-11:30,13:30-19:00", "2025-03-05 11:29", True),
    ("07:30-11:30,13:30-19:00", "2025-03-05 12:00", False),
    ("07:30-11:30,13:30-19:00", "2025-03-05 13:30", True),
    ("07:30-11:30,13:30-19:00", "2025-03-05 19:00", False),
    # past midnight: the evening belongs to the day it starts, the early morning spills over
    ("16:00-01:00", "2025-03-03 15:59", False),
    ("16:00-01:00", "2025-03-03 23:59", True),
    ("16:00-01:00", "2025-03-04 00:30", True),
    ("16:00-01:00", "2025-03-04 01:00", False),
    ("17:00-00:30", "2025-03-09 00:15", True),
    ("17:00-00:30", "2025-03-09 00:45", False),
    ("Fr 18:00-02:00", "2025-03-08 01:30", True),  # Saturday early morning, from Friday
    ("Fr 18:00-02:00", "2025-03-07 01:30", False),  # Friday early morning: Thursday was shut
    # closed days and weekday ranges / lists
    ("Mo-Sa 08:00-18:00; Su off", "2025-03-08 10:00", True),  # Saturday
    ("Mo-Sa 08:00-18:00; Su off", "2025-03-09 10:00", False),  # Sunday
    ("Mo-Fr 08:00-17:30; Sa,Su 09:00-16:00", "2025-03-07 17:00", True),  # Friday
    ("Mo-Fr 08:00-17:30; Sa,Su 09:00-16:00", "2025-03-08 17:00", False),  # Saturday
    ("Mo-Fr 08:00-17:30; Sa,Su 09:00-16:00", "2025-03-09 08:30", False),  # Sunday
    ("Mo-Sa 07:30-18:30; Su 09:00-15:00", "2025-03-09 14:59", True),
    ("We,Sa 06:00-12:00", "2025-03-05 07:00", True),  # Wednesday
    ("We,Sa 06:00-12:00", "2025-03-06 07:00", False),  # Thursday
    ("Mo-Su 06:00-18:00", "2025-03-09 06:00", True),
    ("24/7", "2025-03-09 03:00", True),
]


@pytest.mark.parametrize(("spec", "moment", "expected"), CASES)
def test_open_at(spec: str, moment: str, expected: bool) -> None:
    assert hours.is_open(spec, at(moment)) is expected


def test_other_timezones_are_converted_to_shanghai() -> None:
    # 02:00 UTC is 10:00 in Shanghai; 11:00 UTC on Saturday is 19:00 in Shanghai.
    assert hours.is_open("08:00-18:00", datetime(2025, 3, 3, 2, 0, tzinfo=UTC))
    assert not hours.is_open("08:00-18:00", datetime(2025, 3, 8, 11, 0, tzinfo=UTC))
    # a Saturday 23:00 UTC is Sunday 07:00 in Shanghai: closed on Sundays, and before 08:00
    assert not hours.is_open("Mo-Sa 06:00-18:00; Su off", datetime(2025, 3, 8, 23, tzinfo=UTC))
    # naive times are Shanghai wall time
    assert hours.is_open("08:00-18:00", datetime(2025, 3, 3, 10, 0))


@pytest.mark.parametrize("status", ["suspended", "relocated", "retired"])
def test_not_active_is_never_open(status: str) -> None:
    assert hours.is_open("24/7", at("2025-03-03 12:00"), status) is False
    assert hours.is_open("24/7", at("2025-03-03 12:00"), "active") is True


def test_open_mask_matches_single_evaluation() -> None:
    specs = ["08:00-18:00", "16:00-01:00", "08:00-18:00", None, "Mo-Sa 08:00-18:00; Su off"]
    status = ["active", "active", "suspended", "active", "active"]
    moment = at("2025-03-09 00:30")  # Sunday just after midnight
    mask = hours.open_mask(specs, status, moment)
    assert mask.tolist() == [False, True, False, False, False]


@pytest.mark.parametrize(
    "bad", ["", "abc", "25:00-26:00", "Mo-Xx 08:00-09:00", "08:00-", "8点到18点"]
)
def test_bad_strings_are_reported_not_raised(bad: str) -> None:
    message = hours.check(bad)
    assert message is not None and message  # a reason, not an exception
    assert hours.is_open(bad, at("2025-03-03 12:00")) is False
    assert hours.next_change(bad, at("2025-03-03 12:00")) is None


def test_bad_hours_reported_at_load_by_row(tmp_path: Path) -> None:
    """Rows with unparsable hours are reported with row, code and reason, and still load:
    residents still find the stall (never "open now"), and the clerk is told what to fix."""
    rows = [
        ("XLP-370705-901", "08:00-18:00"),
        ("XLP-370705-902", "8点到18点"),
        ("XLP-370705-903", "Mo-Sa 08:00-18:00; Su off"),
        ("XLP-370705-904", "Mo-Xx 08:00-09:00"),
    ]
    frame = gpd.GeoDataFrame(
        {
            "code": [r[0] for r in rows],
            "name": ["测试"] * len(rows),
            "services": ["修鞋"] * len(rows),
            "hours": [r[1] for r in rows],
            "status": ["active"] * len(rows),
            "kind": ["夜市"] * len(rows),  # so the same rows also make vendor clusters
        },
        geometry=[shapely.Point(119.16, 36.71 + i * 0.001) for i in range(len(rows))],
        crs=4326,
    )
    path = tmp_path / "stalls.geojson"
    frame.to_file(path, driver="GeoJSON")
    loaded, report = load_layer(path, "stalls")
    assert loaded["code"].tolist() == [r[0] for r in rows]
    assert all(p.action == "warning" for p in report.problems)
    bad_hours = loaded.set_index("code")["hours"]
    assert not hours.is_open(bad_hours["XLP-370705-902"], at("2025-03-03 12:00"))
    assert hours.is_open(bad_hours["XLP-370705-901"], at("2025-03-03 12:00"))
    bad = {(p.row, p.code, p.field) for p in report.problems}
    assert bad == {(2, "XLP-370705-902", "hours"), (4, "XLP-370705-904", "hours")}
    assert all("opening_hours" in p.message for p in report.problems)
    # the same through the in-memory validator
    _, report2 = validate_layer(frame, "vendor_clusters")
    assert {p.code for p in report2.problems if p.field == "hours"} == {
        "XLP-370705-902",
        "XLP-370705-904",
    }


def test_dataset_hours_all_parse() -> None:
    snap = load_dataset(Path(__file__).resolve().parent.parent / "data")
    for report in snap.reports:
        assert not [p for p in report.problems if p.field == "hours"], report.layer


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ("Mo-Sa 08:00-18:00; Su off", "周一至周六 08:00–18:00；周日休息"),
        ("07:30-11:30,13:30-19:00", "每天 07:30–11:30、13:30–19:00"),
        ("16:00-01:00", "每天 16:00–次日01:00"),
        ("We,Sa 06:00-12:00", "周三、周六 06:00–12:00"),
        ("Mo-Su 06:00-18:00", "每天 06:00–18:00"),
        ("24/7", "全天24小时营业"),
        ("Mo-Fr 08:00-17:30; Sa,Su 09:00-16:00", "周一至周五 08:00–17:30；周六、周日 09:00–16:00"),
        ("PH off; 08:00-18:00", "PH off; 08:00-18:00"),  # richer syntax is shown as written
    ],
)
def test_describe_in_chinese(spec: str, text: str) -> None:
    assert hours.describe(spec) == text


def test_state_text_says_when_it_changes() -> None:
    assert hours.state_text("08:00-18:00", at("2025-03-03 10:00")) == "营业中 · 18:00 收摊"
    assert hours.state_text("08:00-18:00", at("2025-03-03 19:00")) == "休息中 · 明天 08:00 开门"
    assert hours.state_text("16:00-01:00", at("2025-03-03 20:00")) == "营业中 · 凌晨 01:00 收摊"
    # Saturday evening, closed on Sunday: opens again Monday
    assert (
        hours.state_text("Mo-Sa 08:00-18:00; Su off", at("2025-03-08 19:00"))
        == "休息中 · 周一 08:00 开门"
    )
    assert hours.state_text("24/7", at("2025-03-03 10:00")) == "营业中"
    assert hours.state_text("nonsense", at("2025-03-03 10:00")) == "营业时间未知"
