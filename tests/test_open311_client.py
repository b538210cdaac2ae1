"""Clients someone else wrote: georeport (PyPI's Open311 GeoReport v2 client) lists the
categories and reads reports back; posting is a plain form POST, as the specification defines
it (georeport has no POST method). And a bureau's webhook receiver gets signed notices of
assignment and escalation."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from georeport import GeoReport

from geo_service.core.settings import Settings
from geo_service.core.snapshot import Snapshot, SnapshotStore
from geo_service.core.workcalendar import SHANGHAI
from geo_service.web.app import create_app
from tests.backends import copy_data
from tests.services import app_in_thread


class Receiver:
    """A bureau's webhook endpoint on loopback: records what arrives."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.arrived = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                outer.arrived.set()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, n: int, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < end:
            time.sleep(0.02)
        assert len(self.got) >= n, self.got


@pytest.fixture
def hook() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture
def live(snapshot: Snapshot, tmp_path: Path, hook: Receiver) -> Iterator[tuple[str, Any]]:
    def make(base: str) -> Any:
        settings = Settings(
            data_dir=copy_data(tmp_path / "data"),
            public_base_url=base,
            rate_limit_enabled=False,
            webhook_url=hook.url,
            webhook_secret="s3cret",
            case_escalation_poll_s=3600,  # the test escalates itself, with its own clock
        )
        return create_app(settings, SnapshotStore(snapshot))

    with app_in_thread(make) as live:
        yield live


def test_georeport_lists_services_and_reads_a_posted_request(live: tuple[str, Any]) -> None:
    base, _ = live
    client = GeoReport(f"{base}/open311/v2")
    services = client.get_service_list()
    assert ("JM01", "占道经营") in {(s["service_code"], s["service_name"]) for s in services}
    definition = client.get_service_definition("HW01")
    assert definition["service_code"] == "HW01"
    posted = requests.post(
        f"{base}/open311/v2/requests.json",
        data={
            "service_code": "HW01",
            "lat": 36.710449,
            "long": 119.165887,
            "crs": "gcj02",
            "description": "路边垃圾堆积",
            "address_string": "胜利东街",
        },
        timeout=30,
    )
    assert posted.status_code == 201, posted.text
    rid = posted.json()[0]["service_request_id"]
    one = client.get_service_request(rid)
    assert (one["service_request_id"], one["status"], one["service_code"]) == (rid, "open", "HW01")
    assert one["address"] == "胜利东街"
    # the GCJ-02 point came back in WGS84: about 530 m from where it was sent, as in Weifang
    assert abs(one["long"] - 119.16) < 0.001 and abs(one["lat"] - 36.71) < 0.001
    listed = client.get_service_requests(service_code="HW01", status="open")
    assert [r["service_request_id"] for r in listed] == [rid]
    assert datetime.fromisoformat(one["requested_datetime"]).tzinfo is not None


def test_assignment_and_escalation_reach_the_webhook_signed(
    live: tuple[str, Any], hook: Receiver
) -> None:
    base, app = live
    desk = app.state.runtime.cases
    filed_at = datetime(2026, 12, 2, 10, 0, tzinfo=SHANGHAI)
    desk.clock = lambda: filed_at
    r = requests.post(
        f"{base}/open311/v2/requests.json",
        data={"service_code": "JM01", "lat": 36.71, "long": 119.16, "description": "占道",
              "phone": "13900000000"},
        timeout=30,
    )  # fmt: skip
    rid = r.json()[0]["service_request_id"]
    hook.wait_for(1)
    desk.clock = lambda: datetime(2026, 12, 2, 12, 5, tzinfo=SHANGHAI)
    assert [c.id for c in desk.escalate_due()] == [rid]
    hook.wait_for(2)
    events = []
    for headers, body in hook.got:
        sig = hmac.new(
            b"s3cret", headers["x-geoservice-timestamp"].encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        assert headers["x-geoservice-signature"] == f"sha256={sig}"
        doc = json.loads(body)
        events.append((headers["x-geoservice-event"], doc["data"]["id"], doc["data"]["level"]))
        assert "13900000000" not in body.decode()
    assert events == [("case.assigned", rid, "grid"), ("case.escalated", rid, "community")]
