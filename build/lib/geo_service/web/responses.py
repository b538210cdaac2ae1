"""JSON responses serialised with orjson (numpy-aware, and much faster than the stdlib).

``JSONResponse`` subclasses starlette's ``JSONResponse`` so that FastAPI declares a route's
``response_model`` as its schema in the OpenAPI document; only ``render`` differs. Handlers return
these objects directly, so FastAPI never validates or re-serialises the body through the model.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse as _StarletteJSONResponse

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

GEOJSON = "application/geo+json"


def dumps(content: Any) -> bytes:
    return orjson.dumps(content, option=_OPTIONS)


class JSONResponse(_StarletteJSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


class GeoJSONResponse(JSONResponse):
    media_type = GEOJSON
