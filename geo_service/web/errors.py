"""Every bad input becomes a 4xx JSON body that says what is wrong, never a 5xx."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from geo_service.core.errors import InputError, NotFoundError, quote
from geo_service.core.layers import Problem
from geo_service.core.versions import etag
from geo_service.domain.auth import Forbidden
from geo_service.domain.editing import (
    AlreadyExists,
    EditError,
    NotFound,
    PreconditionRequired,
    VersionConflict,
)
from geo_service.storage.records import InvalidRecord
from geo_service.web.responses import JSONResponse

DB_RETRY_AFTER_S = 5


class ApiError(InputError):
    """An input error with an HTTP status, headers or extra body fields of its own."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, field)
        self.status = status
        self.headers = headers
        self.extra = extra or {}


def bad_request(message: str, field: str | None = None) -> InputError:
    return InputError(message, field)


def not_found(message: str) -> InputError:
    return NotFoundError(message)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'})


def _body(message: str, errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"detail": message, "errors": errors}


def _problems(problems: list[Problem]) -> list[dict[str, Any]]:
    return [
        {"field": p.field or "feature", "message": p.message, "row": p.row, "code": p.code}
        for p in problems
    ]


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("query", "path", "body", "header")]
    return ".".join(parts) or "request"


def error_response(exc: InputError) -> JSONResponse:
    """The one JSON answer to an input error (also sent by the ASGI middlewares)."""
    errors = [{"field": exc.field, "message": exc.message}] if exc.field else []
    msg = f"{exc.field}: {exc.message}" if exc.field else exc.message
    extra = exc.extra if isinstance(exc, ApiError) else {}
    headers = exc.headers if isinstance(exc, ApiError) else None
    return JSONResponse({**_body(msg, errors), **extra}, status_code=exc.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> JSONResponse:
        return error_response(exc)

    # Refused edits (nothing was changed): the core's reasons mapped to their HTTP status.
    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        return JSONResponse(_body(str(exc), []), status_code=403)

    @app.exception_handler(EditError)
    async def _edit(request: Request, exc: EditError) -> JSONResponse:
        body = _body(str(exc), [])
        headers = None
        if isinstance(exc, VersionConflict):
            body["current_version"] = exc.current.version
            body["current"] = exc.current.feature()  # to re-apply the change without a GET
            headers = {"ETag": etag(exc.current.version)}
        status = {
            NotFound: 404,
            AlreadyExists: 409,
            VersionConflict: 409,
            PreconditionRequired: 428,
        }.get(type(exc), 400)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(InvalidRecord)
    async def _invalid(request: Request, exc: InvalidRecord) -> JSONResponse:
        return JSONResponse(_body(str(exc), _problems(exc.problems)), status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for e in exc.errors():
            field = _loc(e.get("loc", ()))
            msg = str(e.get("msg", "invalid"))
            if e.get("type") == "missing":
                msg = "required but missing"
            elif e.get("type") == "json_invalid":
                msg = f"malformed JSON: {e.get('ctx', {}).get('error', msg)}"
            inp = e.get("input")
            if e.get("type") != "missing" and isinstance(inp, (str, int, float)):
                msg = f"{msg} (got {quote(inp)})"
            errors.append({"field": field, "message": msg})
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
        return JSONResponse(_body(summary, errors), status_code=422)

    # The database is down or every connection is busy: nothing was written; try again.
    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            _body("the database is unavailable; nothing was changed: retry shortly", []),
            status_code=503,
            headers={"Retry-After": str(DB_RETRY_AFTER_S)},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such path: {request.url.path}"
        return JSONResponse(
            _body(detail, []), status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )
