"""Tell a bureau's own system when a case is assigned or escalated (it forwards to WeChat Work/SMS).

A request that assigns a case must not wait for, or fail with, somebody else's server; and a
bureau that restarts for a minute must still get the event. So ``WebhookSender.send`` only puts
the event on a bounded in-memory queue and returns; one daemon thread posts the events in order
of arrival and retries a failed one (non-2xx, connection error, timeout) with capped exponential
backoff before giving up and logging it. Each POST is signed: ``X-GeoService-Signature`` is
``sha256=`` + hex HMAC-SHA256 of ``timestamp + "." + body`` under the shared secret, with a fresh
timestamp per attempt; ``X-GeoService-Delivery`` is the same on every attempt of one event, so
the receiver can drop a repeat (an answer lost after the event arrived is sent again).

The queue lives in memory: events still queued when the process ends are lost (and logged by
``close``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import orjson

log = logging.getLogger(__name__)

QUEUE_LIMIT: Final = 10_000
JITTER: Final = 0.1  # each backoff delay is stretched by up to 10%

Post = Callable[[str, bytes, dict[str, str], float], int]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``timestamp + "." + body`` under ``secret``."""
    message = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class _Event:
    event: str
    delivery: str
    body: bytes


def _where(url: str) -> str:
    """The URL without path or query, for logs (a forwarding URL may carry a key in its query)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


class WebhookSender:
    """Posts events to ``url`` from one background thread; ``send`` never blocks."""

    def __init__(
        self,
        url: str | None,
        secret: str,
        attempts: int = 6,
        base_delay_s: float = 1.0,
        max_delay_s: float = 60.0,
        timeout_s: float = 5.0,
        post: Post | None = None,
        sleep: Callable[[float], None] | None = None,
        queue_limit: int = QUEUE_LIMIT,
    ) -> None:
        if url is not None and urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("the webhook URL must start with http:// or https://")
        if attempts < 1 or queue_limit < 1:
            raise ValueError("attempts and queue_limit must be at least 1")
        self.url = url
        self._secret = secret
        self.attempts = attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.timeout_s = timeout_s
        self._post = post
        self._client: httpx.Client | None = None
        self._abort = threading.Event()  # close() ran out of time: stop even mid-retry
        self._sleep = sleep if sleep is not None else self._interruptible_sleep
        self._queue: deque[_Event] = deque()
        self._queue_limit = queue_limit
        self._cond = threading.Condition()
        self._closing = False
        self._busy = False  # an event has been taken off the queue and is being delivered
        self.delivered = 0
        self.failed = 0
        self.dropped = 0  # pushed out of a full queue, or still queued when close() gave up
        self._thread: threading.Thread | None = None
        if url is not None:
            self._thread = threading.Thread(
                target=self._run, name="geo-service-webhook", daemon=True
            )
            self._thread.start()

    # --- the caller's side ----------------------------------------------------------------------

    def send(self, event: str, payload: dict[str, Any]) -> None:
        """Queue ``payload`` as event ``event`` and return at once (nothing when no URL is set).

        The body is ``{"event", "delivery", "created_at", "data": payload}``, serialised now:
        a payload that is not JSON raises here, in the caller, not later in the thread.
        """
        if self.url is None:
            return
        delivery = uuid.uuid4().hex
        body = orjson.dumps(
            {
                "event": event,
                "delivery": delivery,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "data": payload,
            }
        )
        item = _Event(event, delivery, body)
        with self._cond:
            if self._closing:
                log.warning("webhook %s %s not sent: the sender is closed", event, delivery)
                self.dropped += 1
                return
            if len(self._queue) >= self._queue_limit:
                oldest = self._queue.popleft()
                self.dropped += 1
                log.error(
                    "webhook queue full (%d): dropped the oldest event %s %s",
                    self._queue_limit,
                    oldest.event,
                    oldest.delivery,
                )
            self._queue.append(item)
            self._cond.notify()

    def flush(self, timeout: float) -> bool:
        """Wait until every queued event is delivered or given up; False if ``timeout`` ran out."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking events, deliver what is queued within ``timeout`` seconds, then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is None:
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abort.set()  # the worker drops what is left at its next step
            with self._cond:
                self._cond.notify_all()

    # --- the worker thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._closing:
                        self._cond.wait()
                    if self._abort.is_set() or not self._queue:
                        self._give_up_queued()
                        return
                    item = self._queue.popleft()
                    self._busy = True
                try:
                    self._deliver(item)
                finally:
                    with self._cond:
                        self._busy = False
                        self._cond.notify_all()
        finally:
            if self._client is not None:
                self._client.close()

    def _give_up_queued(self) -> None:
        if self._queue:
            log.error("webhook sender closed with %d events not sent", len(self._queue))
            self.dropped += len(self._queue)
            self._queue.clear()

    def _deliver(self, item: _Event) -> None:
        assert self.url is not None
        for attempt in range(self.attempts):
            if attempt:
                self._sleep(self._delay(attempt - 1))
            if self._abort.is_set():
                self.failed += 1
                log.error(
                    "webhook %s %s not sent: closed while retrying", item.event, item.delivery
                )
                return
            timestamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "X-GeoService-Timestamp": timestamp,
                "X-GeoService-Signature": "sha256=" + sign(self._secret, timestamp, item.body),
                "X-GeoService-Event": item.event,
                "X-GeoService-Delivery": item.delivery,
            }
            try:
                status = (self._post or self._httpx_post)(
                    self.url, item.body, headers, self.timeout_s
                )
            except Exception as exc:  # connection refused, timeout, or a faulty injected post
                outcome = f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= status < 300:
                    self.delivered += 1
                    return
                outcome = f"HTTP {status}"
            log.warning(
                "webhook %s %s to %s: attempt %d of %d failed (%s)",
                item.event,
                item.delivery,
                _where(self.url),
                attempt + 1,
                self.attempts,
                outcome,
            )
        self.failed += 1
        log.error(
            "webhook %s %s to %s: gave up after %d attempts",
            item.event,
            item.delivery,
            _where(self.url),
            self.attempts,
        )

    def _delay(self, retry: int) -> float:
        """Seconds before retry ``retry`` (0-based): base * 2**retry, stretched, capped."""
        raw = self.base_delay_s * 2.0 ** min(retry, 30)
        return min(self.max_delay_s, raw * (1.0 + random.uniform(0.0, JITTER)))

    def _interruptible_sleep(self, seconds: float) -> None:
        self._abort.wait(seconds)

    def _httpx_post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        if self._client is None:
            self._client = httpx.Client(follow_redirects=False)
        return self._client.post(url, content=body, headers=headers, timeout=timeout).status_code
