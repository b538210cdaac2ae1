"""JSON request bodies: nesting depth bounded before they are parsed.

A body such as ``[[[[...1000 deep...]]]]`` is a few kilobytes, yet everything that walks the
parsed value recursively (validation, error messages) can fail with a RecursionError, a 500.
``check_depth`` finds the deepest nesting from the bytes alone with a few vectorised numpy
passes (brackets inside strings masked out), so a body is refused with a 422 naming the problem
before it is parsed. ``JSONBodyRoute`` applies it to every route with a body model; ``loads``
is the depth-checked orjson parse of the routes that read their body themselves (bulk locate).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

from geo_service.core.errors import InputError

_OPEN, _CLOSE, _QUOTE, _BACKSLASH = 1, 2, 3, 4
_KIND = np.zeros(256, dtype=np.uint8)
_KIND[[ord("["), ord("{")]] = _OPEN
_KIND[[ord("]"), ord("}")]] = _CLOSE
_KIND[ord('"')] = _QUOTE
_KIND[ord("\\")] = _BACKSLASH


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in ``raw`` (0 for a scalar); for malformed
    JSON a number the parser will refuse anyway."""
    data = np.frombuffer(raw, dtype=np.uint8)
    kinds = _KIND[data]
    pos = np.flatnonzero(kinds)  # only the characters that matter, in order
    kind = kinds[pos]
    quote = kind == _QUOTE
    backslash = kind == _BACKSLASH
    if backslash.any():
        # A quote right after an odd run of backslashes is escaped, not the end of a string.
        n = len(kind)
        adjacent = np.zeros(n, dtype=bool)
        adjacent[1:] = np.diff(pos) == 1
        starts = backslash & ~(adjacent & np.r_[False, backslash[:-1]])
        index = np.arange(n)
        run_start = np.maximum.accumulate(np.where(starts, index, 0))
        run = np.where(backslash, index - run_start + 1, 0)
        before = np.r_[0, run[:-1]]
        escaped = quote & adjacent & (before % 2 == 1)
        quote &= ~escaped
    inside = np.cumsum(quote, dtype=np.int64) % 2 == 1  # after an odd number of quotes
    step = np.where(kind == _OPEN, 1, np.where(kind == _CLOSE, -1, 0)).astype(np.int32)
    step[inside] = 0
    return int(np.cumsum(step).max(initial=0))


def check_depth(raw: bytes, max_depth: int, field: str = "body") -> None:
    """Refuse (422) a body nested deeper than ``max_depth``."""
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return  # cannot be deeper: no numpy pass for small bodies
    depth = json_depth(raw)
    if depth > max_depth:
        raise InputError(
            f"JSON nested {depth} levels deep; at most {max_depth} levels of arrays/objects",
            field,
        )


def loads(raw: bytes, max_depth: int, field: str = "body") -> Any:
    """Depth-checked orjson parse; malformed JSON is a 422 naming ``field``."""
    check_depth(raw, max_depth, field)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc}", field) from None


class JSONBodyRoute(APIRoute):
    """A route whose JSON body model is depth-checked (422) before FastAPI parses it.

    FastAPI keeps parsing it with the stdlib: orjson would turn integers beyond 64 bits into
    floats, and these bodies are small (``max_edit_body_bytes``, ``max_analysis_body_bytes``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler  # no body model: nothing to do, no cost

        async def bounded(request: Request) -> Response:
            # Checked here, outside FastAPI's body parsing, which would turn any error into a
            # generic 400; the body read is cached on ``request`` for FastAPI to parse.
            check_depth(await request.body(), request.app.state.settings.max_json_depth)
            return await handler(request)

        return bounded
