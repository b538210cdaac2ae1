"""Webhooks reach a real local HTTP server once, in order, signed (checked with an independent
HMAC), after retries; a dead receiver is given up on and counted; ``send`` never waits for it.
No test measures time: ordering is shown with events, backoff with an injected sleep."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from geo_service.domain.webhook import WebhookSender, sign

SECRET = "s3cret-bureau-key"
WAIT = 30.0  # a generous bound for a loaded machine; never asserted as a duration


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """What the local server got; ``respond(n)`` gives the status of the n-th request (0-based)."""

    respond: Callable[[int], int]
    url: str = ""
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if 200 <= r.status < 300]


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[int], int]], Receiver]]:
    servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(respond: Callable[[int], int]) -> Receiver:
        receiver = Receiver(respond)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    n = len(receiver.requests)
                    receiver.requests.append(Received(dict(self.headers.items()), body, 0))
                status = receiver.respond(n)
                with receiver.lock:
                    receiver.requests[n].status = status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append((server, thread))
        receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        return receiver

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


def verifies(received: Received) -> bool:
    """The receiver's check, written from the spec with nothing of the sender's code."""
    timestamp = received.headers["X-GeoService-Timestamp"]
    expected = hmac.new(
        SECRET.encode(), timestamp.encode() + b"." + received.body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(received.headers["X-GeoService-Signature"], "sha256=" + expected)


def test_sign_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = '{"case":"随手拍-1"}'.encode()
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k", "1700000000", body) == expected
    assert sign("k", "1700000001", body) != expected


def test_retried_after_two_500s_then_delivered_exactly_once_signed(serve: Callable) -> None:
    receiver = serve(lambda n: 500 if n < 2 else 200)
    sender = WebhookSender(receiver.url, SECRET, base_delay_s=0.01)
    payload = {"case": "C-2024-0001", "grid": "370702001001", "officer": "王伟"}

    sender.send("case.assigned", payload)
    assert sender.flush(WAIT)
    sender.close(WAIT)

    assert [r.status for r in receiver.requests] == [500, 500, 200]
    assert (sender.delivered, sender.failed) == (1, 0)
    (accepted,) = receiver.accepted()
    assert verifies(accepted)
    assert all(verifies(r) for r in receiver.requests)
    assert accepted.headers["Content-Type"] == "application/json"
    assert accepted.headers["X-GeoService-Event"] == "case.assigned"
    # One delivery id and one body for every attempt, so the receiver can drop a repeat.
    assert {r.headers["X-GeoService-Delivery"] for r in receiver.requests} == {
        accepted.headers["X-GeoService-Delivery"]
    }
    assert {r.body for r in receiver.requests} == {accepted.body}
    event = json.loads(accepted.body)
    assert event["event"] == "case.assigned"
    assert event["delivery"] == accepted.headers["X-GeoService-Delivery"]
    assert event["data"] == payload


def test_a_tampered_body_does_not_verify(serve: Callable) -> None:
    receiver = serve(lambda n: 200)
    sender = WebhookSender(receiver.url, SECRET, base_delay_s=0.01)
    sender.send("case.escalated", {"case": "C-1"})
    assert sender.flush(WAIT)
    sender.close(WAIT)
    (got,) = receiver.requests
    assert verifies(got)
    assert not verifies(Received(got.headers, got.body.replace(b"C-1", b"C-2"), got.status))


def test_a_receiver_that_always_fails_is_given_up_on(
    serve: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = serve(lambda n: 500)
    url = receiver.url + "?key=QUERY-TOKEN"
    sender = WebhookSender(url, SECRET, attempts=4, base_delay_s=0.01)

    with caplog.at_level(logging.WARNING, logger="geo_service.domain.webhook"):
        sender.send("case.escalated", {"case": "C-9"})
        assert sender.flush(WAIT)
        sender.close(WAIT)

    assert len(receiver.requests) == 4
    assert (sender.delivered, sender.failed) == (0, 1)
    gave_up = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(gave_up) == 1 and "gave up after 4 attempts" in gave_up[0].getMessage()
    assert "QUERY-TOKEN" not in caplog.text and SECRET not in caplog.text


def test_a_refused_connection_is_retried_then_given_up() -> None:
    with socket.socket() as sock:  # a port nobody listens on any more
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sender = WebhookSender(f"http://127.0.0.1:{port}/hook", SECRET, attempts=2, base_delay_s=0.01)
    sender.send("case.assigned", {"case": "C-1"})
    assert sender.flush(WAIT)
    sender.close(WAIT)
    assert (sender.delivered, sender.failed) == (0, 1)


def test_no_url_sends_nothing() -> None:
    calls: list[str] = []

    def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        calls.append(url)
        return 200

    sender = WebhookSender(None, SECRET, post=post)
    sender.send("case.assigned", {"case": "C-1"})
    assert sender.flush(WAIT)
    sender.close(WAIT)
    assert calls == []
    assert (sender.delivered, sender.failed, sender.dropped) == (0, 0, 0)


def test_send_returns_while_the_receiver_is_still_busy(serve: Callable) -> None:
    order: list[str] = []
    arrived = threading.Event()
    release = threading.Event()

    def slow(n: int) -> int:
        arrived.set()
        release.wait(2.0)  # the slow server: holds the answer until released (at most 2 s)
        order.append("answered")
        return 200

    receiver = serve(slow)
    sender = WebhookSender(receiver.url, SECRET, base_delay_s=0.01)

    sender.send("case.assigned", {"case": "C-1"})
    order.append("first send returned")
    assert arrived.wait(WAIT)  # the server now holds the first request unanswered
    sender.send("case.assigned", {"case": "C-2"})
    order.append("second send returned")
    release.set()
    assert sender.flush(WAIT)
    sender.close(WAIT)

    # Had send waited for the server, "answered" would come before a "send returned".
    assert order == ["first send returned", "second send returned", "answered", "answered"]
    assert sender.delivered == 2


def test_events_arrive_in_order_even_across_a_retry(serve: Callable) -> None:
    receiver = serve(lambda n: 503 if n == 0 else 200)
    sender = WebhookSender(receiver.url, SECRET, base_delay_s=0.01)
    for i in range(10):
        sender.send("case.assigned", {"seq": i})
    assert sender.flush(WAIT)
    sender.close(WAIT)
    assert [json.loads(r.body)["data"]["seq"] for r in receiver.accepted()] == list(range(10))
    assert (sender.delivered, sender.failed) == (10, 0)


def test_backoff_doubles_with_a_little_jitter_and_is_capped() -> None:
    delays: list[float] = []
    sender = WebhookSender(
        "http://bureau.invalid/hook",
        SECRET,
        attempts=6,
        base_delay_s=1.0,
        max_delay_s=5.0,
        post=lambda url, body, headers, timeout: 502,
        sleep=delays.append,
    )
    sender.send("case.escalated", {"case": "C-1"})
    assert sender.flush(WAIT)
    sender.close(WAIT)
    assert len(delays) == 5  # between 6 attempts
    for delay, base in zip(delays[:3], (1.0, 2.0, 4.0), strict=True):
        assert base <= delay <= base * 1.1
    assert delays[3:] == [5.0, 5.0]
    assert sender.failed == 1


def test_a_full_queue_drops_the_oldest(caplog: pytest.LogCaptureFixture) -> None:
    started, release = threading.Event(), threading.Event()
    seen: list[int] = []

    def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        started.set()
        release.wait(WAIT)
        seen.append(json.loads(body)["data"]["seq"])
        return 204

    sender = WebhookSender("http://bureau.invalid/hook", SECRET, post=post, queue_limit=2)
    sender.send("e", {"seq": 1})
    assert started.wait(WAIT)  # seq 1 is being delivered; the queue is empty
    with caplog.at_level(logging.ERROR, logger="geo_service.domain.webhook"):
        for seq in (2, 3, 4):
            sender.send("e", {"seq": seq})
    release.set()
    assert sender.flush(WAIT)
    sender.close(WAIT)
    assert seen == [1, 3, 4]
    assert (sender.delivered, sender.dropped) == (3, 1)
    assert "dropped the oldest" in caplog.text


def test_a_failing_post_function_does_not_stop_the_worker() -> None:
    calls: list[int] = []

    def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return 200

    sender = WebhookSender("http://bureau.invalid/hook", SECRET, post=post, base_delay_s=0.01)
    sender.send("e", {"seq": 1})
    sender.send("e", {"seq": 2})
    assert sender.flush(WAIT)
    sender.close(WAIT)
    assert (sender.delivered, sender.failed, len(calls)) == (2, 0, 3)


def test_close_drains_then_refuses_new_events() -> None:
    seen: list[int] = []

    def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        seen.append(json.loads(body)["data"]["seq"])
        return 200

    sender = WebhookSender("http://bureau.invalid/hook", SECRET, post=post)
    for seq in range(5):
        sender.send("e", {"seq": seq})
    sender.close(WAIT)
    assert seen == [0, 1, 2, 3, 4]
    sender.send("e", {"seq": 5})  # after close: dropped and logged, never raised
    assert seen == [0, 1, 2, 3, 4] and sender.dropped == 1


def test_close_that_runs_out_of_time_abandons_the_retries() -> None:
    tried = threading.Event()

    def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        tried.set()
        return 500

    sender = WebhookSender(
        "http://bureau.invalid/hook",
        SECRET,
        base_delay_s=3600.0,  # the worker would sleep an hour before the retry
        max_delay_s=3600.0,
        post=post,
    )
    sender.send("e", {"seq": 1})
    sender.send("e", {"seq": 2})
    assert tried.wait(WAIT)  # seq 1 failed once: the worker is (about to be) in its backoff
    sender.close(timeout=0.05)
    assert sender._thread is not None
    sender._thread.join(WAIT)  # the abort wakes the backoff sleep
    assert not sender._thread.is_alive()
    assert (sender.delivered, sender.failed, sender.dropped) == (0, 1, 1)


def test_a_payload_that_is_not_json_fails_in_the_caller() -> None:
    sender = WebhookSender(
        "http://bureau.invalid/hook", SECRET, post=lambda url, body, headers, timeout: 200
    )
    with pytest.raises(TypeError):
        sender.send("e", {"when": object()})
    sender.close(WAIT)
    assert sender.delivered == 0


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="http"):
        WebhookSender("file:///etc/passwd", SECRET)
