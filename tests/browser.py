"""Headless Chromium on a closed network, shared by the browser tests and bench/bench_maps.py:
the launch arguments, the basemap tile hosts (answered with a blank local tile) and that tile."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
TILE_HOSTS = ("autonavi.com", "tianditu.gov.cn", "tile.openstreetmap.org")


def blank_tile() -> bytes:
    """A 256x256 light grey PNG."""
    row = b"\x00" + b"\xee\xee\xee" * 256
    raw = zlib.compress(row * 256)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", 256, 256, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


TILE = blank_tile()


@contextmanager
def chromium(executable_path: str) -> Iterator[Browser]:
    """Headless Chromium launched with ``CHROMIUM_ARGS``; closed, with playwright, at the end."""
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable_path, args=CHROMIUM_ARGS)
        yield b
        b.close()
