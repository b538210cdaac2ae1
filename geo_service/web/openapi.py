"""The OpenAPI document, completed once after FastAPI generates it: every error answer is declared
with the body ``web/errors.py`` really sends (``ErrorBody``), in one place rather than per route.

- 422 (invalid input) on every operation that takes parameters or a body, replacing FastAPI's
  ``HTTPValidationError`` (our handler answers ``ErrorBody`` instead);
- 400 on every operation with a body (FastAPI's answer to a body it cannot even decode);
- 400 also on every operation of the JSON API (``/api``, ``/open311``): a query parameter the
  route does not declare is refused, naming it (``deps.reject_unknown_query``);
- 404 on every operation with a path parameter (a code can be unknown);
- 413, 429 and 503 on every operation (limits, rate limits, not ready);
- any other 4xx/5xx a route declares (401/403/409/428 on writes) gets ``ErrorBody`` as its
  content unless the route gave a model of its own (``/readyz`` answers 503 with ``Health``, a
  409 carries the current feature: ``ConflictBody``), as application/json; pages (``/maps/…``)
  answer their errors with a Chinese page (``web/errors.py``), so theirs are text/html as well
  (the limits in front of every route still answer JSON).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from geo_service.web.errors import is_api_path, is_html_path
from geo_service.web.models import ErrorBody
from geo_service.web.ogcmodels import PARAMETERS as OGC_PARAMETERS

SCHEMAS = "#/components/schemas/"
ERROR_REF = SCHEMAS + "ErrorBody"
FASTAPI_422 = SCHEMAS + "HTTPValidationError"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

DESCRIPTIONS = {
    "400": "A query parameter the endpoint does not take (named in the body), or a body that "
    "could not be parsed at all",
    "404": "Unknown code (or path); the body says which",
    "413": "The request (body, number of points or sites) is too large",
    "422": "Invalid input: every problem named by its field; nothing was changed",
    "429": "Too many requests: slow down (see Retry-After)",
    "503": "Not ready (loading data) or overloaded: retry later (see Retry-After)",
}
EVERY_OPERATION = ("413", "429", "503")

# A feature's answer carries its version: ``responses={200: ETAG_HEADER}`` on such routes.
ETAG_HEADER: dict[str, Any] = {
    "headers": {
        "ETag": {
            "description": 'The feature\'s version, W/"<version>": send it as If-Match to change it',
            "required": True,
            "schema": {"type": "string", "pattern": '^W/"[0-9]+"$'},
        }
    }
}


def _is_error(status: str) -> bool:
    return status[:1] in ("4", "5")


def declare_errors(spec: dict[str, Any]) -> dict[str, Any]:
    """Complete ``spec`` in place (and return it)."""
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    # The OGC API's query parameters by name: QGIS reads the page size of /ogc items (default
    # and maximum) from components/parameters/limit.
    spec["components"].setdefault("parameters", {}).update(OGC_PARAMETERS)
    error_schema = ErrorBody.model_json_schema(ref_template=SCHEMAS + "{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorBody"] = error_schema
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            responses: dict[str, Any] = op.setdefault("responses", {})
            params = op.get("parameters", [])
            wanted = list(EVERY_OPERATION)
            if params or "requestBody" in op:
                wanted.append("422")
            if "requestBody" in op or is_api_path(path):
                # a body that is not even text (FastAPI's own answer), an unknown parameter
                wanted.append("400")
            if any(p.get("in") == "path" for p in params):
                wanted.append("404")
            for status in wanted:
                responses.setdefault(status, {})
            for status, response in responses.items():
                if not _is_error(status):
                    continue
                response.setdefault("description", DESCRIPTIONS.get(status, "Error"))
                schemas = [c.get("schema") or {} for c in (response.get("content") or {}).values()]
                if any(s.get("$ref") == FASTAPI_422 for s in schemas):
                    response["description"] = DESCRIPTIONS["422"]
                own = next((s for s in schemas if s and s.get("$ref") != FASTAPI_422), None)
                # Errors are application/json whatever the route's media type (a route's
                # ``responses={409: {"model": ...}}`` is filed under its own, e.g. geo+json).
                content = {"application/json": {"schema": own or {"$ref": ERROR_REF}}}
                if is_html_path(path):
                    content = {"text/html": {"schema": {"type": "string"}}, **content}
                response["content"] = content
            op["responses"] = dict(sorted(responses.items()))
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return spec


def install_openapi(app: FastAPI) -> None:
    """``app.openapi()`` returns the completed document (built once, then cached by FastAPI)."""
    generate: Callable[[], dict[str, Any]] = app.openapi
    completed: list[dict[str, Any]] = []  # the document already completed

    def openapi() -> dict[str, Any]:
        spec = generate()  # FastAPI's cached document, rebuilt only if the routes changed
        if not completed or completed[0] is not spec:
            completed[:] = [declare_errors(spec)]
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
