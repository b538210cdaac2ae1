"""Every bad input becomes a 4xx JSON body that says what is wrong, never a 5xx."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from geo_service.api.responses import JSONResponse


class ApiError(Exception):
    """An error the client can fix; ``field`` names the offending input."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def bad_request(message: str, field: str | None = None) -> ApiError:
    return ApiError(422, message, field)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def _body(message: str, errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"detail": message, "errors": errors}


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("query", "path", "body", "header")]
    return ".".join(parts) or "request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        errors = [{"field": exc.field, "message": exc.message}] if exc.field else []
        msg = f"{exc.field}: {exc.message}" if exc.field else exc.message
        return JSONResponse(_body(msg, errors), status_code=exc.status)

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
                msg = f"{msg} (got {inp!r})"
            errors.append({"field": field, "message": msg})
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
        return JSONResponse(_body(summary, errors), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such path: {request.url.path}"
        return JSONResponse(
            _body(detail, []), status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )
