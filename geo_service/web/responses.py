"""JSON responses serialised with orjson (numpy-aware, and much faster than the stdlib)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def dumps(content: Any) -> bytes:
    return orjson.dumps(content, option=_OPTIONS)


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


class GeoJSONResponse(JSONResponse):
    media_type = "application/geo+json"
