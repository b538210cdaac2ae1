"""The lean gzip middleware sends exactly what Starlette's GZipMiddleware sends.

Reference: the same small app wrapped in ``starlette.middleware.gzip.GZipMiddleware``; responses
small and large, JSON and streamed, with and without ``Accept-Encoding: gzip``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, StreamingResponse
from fastapi.testclient import TestClient
from starlette.middleware.gzip import GZipMiddleware as StarletteGZip

from geo_service.web.compression import GZipMiddleware
from geo_service.web.responses import JSONResponse

MINIMUM = 2048


def make(middleware: type) -> TestClient:
    app = FastAPI()
    app.add_middleware(middleware, minimum_size=MINIMUM)

    @app.get("/small")
    def small() -> JSONResponse:
        return JSONResponse({"code": "370705001001001", "name": "网格"})

    @app.get("/large")
    def large() -> JSONResponse:
        return JSONResponse({"codes": [f"37070500100{i:04d}" for i in range(400)]})

    @app.get("/edge")
    def edge() -> PlainTextResponse:
        return PlainTextResponse("x" * MINIMUM)  # exactly the minimum: compressed

    @app.get("/stream")
    def stream() -> StreamingResponse:
        def chunks() -> Iterator[bytes]:
            yield b"a" * 100
            yield b"b" * 5000

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/png")
    def png() -> PlainTextResponse:
        return PlainTextResponse("p" * 5000, media_type="image/png")  # excluded type

    return TestClient(app)


@pytest.mark.parametrize("path", ["/small", "/large", "/edge", "/stream", "/png"])
@pytest.mark.parametrize("accept", ["gzip, deflate", "identity", None])
def test_same_as_starlette(path: str, accept: str | None) -> None:
    headers = {"Accept-Encoding": accept} if accept else {"Accept-Encoding": ""}
    ours = make(GZipMiddleware).get(path, headers=headers)
    ref = make(StarletteGZip).get(path, headers=headers)
    assert ours.status_code == ref.status_code == 200
    assert ours.content == ref.content  # httpx decodes gzip: the same payload either way
    for name in ("content-encoding", "vary", "content-length", "content-type"):
        assert ours.headers.get(name) == ref.headers.get(name), name


def test_large_json_is_gzipped_and_small_is_not() -> None:
    client = make(GZipMiddleware)
    big = client.get("/large", headers={"Accept-Encoding": "gzip"})
    assert big.headers["content-encoding"] == "gzip"
    assert int(big.headers["content-length"]) < len(big.content) / 3  # compressed size on the wire
    assert len(big.json()["codes"]) == 400
    small = client.get("/small", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers
    assert small.json() == {"code": "370705001001001", "name": "网格"}
