"""Every bad input becomes a 4xx answer that says what is wrong, never a 5xx.

API routes (``/api``, ``/open311``, ``/healthz``, ``/readyz``, ``/openapi.json``, ``/static``,
``/maps/data``) answer the JSON body ``{"detail", "errors"}``; the pages people open in a browser
(``/``, ``/find``, ``/s/…``, ``/report``, ``/cases/…/page``, ``/officer``, ``/maps/…``), and an
unknown path asked for by a browser (``Accept`` with ``text/html``, without JSON), answer a Chinese
error page (``error.html``) with the same status. The choice is made here, once, for every
handler below.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
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
from geo_service.web.links import route_path
from geo_service.web.pagekit import TEMPLATES
from geo_service.web.responses import JSONResponse

DB_RETRY_AFTER_S = 5

# Paths that always answer JSON (or files), whatever the client accepts.
JSON_PREFIXES = ("/api/", "/open311/", "/static/", "/maps/data/")
JSON_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json"})
# The JSON API proper: its routes refuse query parameters they do not declare.
API_PREFIXES = ("/api/", "/open311/")
HTML_PATHS = frozenset({"/", "/find", "/report", "/officer"})

STATUS_TEXT = {
    400: ("请求有误", "这个链接的参数无法识别，请检查链接是否完整。"),
    401: ("需要登录", "这个页面需要有效的密钥，请先登录。"),
    403: ("没有权限", "您的密钥无权进行这项操作。"),
    404: ("页面不存在", "没有找到您要打开的页面，链接可能有误或已失效。"),
    405: ("不支持的操作", "这个页面不支持这种访问方式。"),
    409: ("内容已被修改", "别人刚刚修改了这里的内容，请刷新后再试。"),
    410: ("已不再提供", "您要找的内容已经撤销。"),
    413: ("内容太大", "提交的内容超过了允许的大小。"),
    422: ("参数有误", "链接中的参数不正确，请检查后重试。"),
    428: ("需要版本号", "修改前请先读取最新版本。"),
    429: ("访问太频繁", "请稍等片刻再试。"),
    503: ("服务繁忙", "服务暂时繁忙或正在加载数据，请稍后再试。"),
}


def is_api_path(path: str) -> bool:
    """A route of the JSON API, where undeclared query parameters are refused."""
    return path.startswith(API_PREFIXES)


def is_html_path(path: str) -> bool:
    """A page people open in a browser: its errors are Chinese pages, not JSON."""
    if path in HTML_PATHS or path.startswith("/s/"):
        return True
    if path.startswith("/cases/") and path.endswith("/page"):
        return True
    return path.startswith("/maps/") and not path.startswith("/maps/data/")


def _is_json_path(path: str) -> bool:
    return path in JSON_PATHS or path.startswith(JSON_PREFIXES)


def _accepts_only_html(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    return ("text/html" in accept or "xhtml" in accept) and "json" not in accept


def _app_path(request: Request) -> str:
    """The path below the app's own ``root_path`` (a mount such as ``/static`` moves
    ``root_path`` to itself; ``app_root_path`` keeps the app's)."""
    scope = request.scope
    root = str(scope.get("app_root_path", scope.get("root_path", "")))
    return route_path({**scope, "root_path": root})


def wants_html(request: Request) -> bool:
    """Answer this request's error with a page: an HTML route, or a browser on an unknown path."""
    path = _app_path(request)
    if is_html_path(path):
        return True
    if _is_json_path(path) or request.scope.get("route") is not None:
        return False
    return _accepts_only_html(request)


def unknown_query(unknown: Iterable[str], known: Iterable[str]) -> InputError:
    """400 naming the query parameters a route does not take (they would be silently ignored)."""
    names = sorted(unknown)
    takes = ", ".join(sorted(known)) or "no query parameters"
    word = "parameter" if len(names) == 1 else "parameters"
    message = f"unknown query {word} {', '.join(map(quote, names))}; this endpoint takes: {takes}"
    errors = [{"field": n, "message": "unknown query parameter"} for n in names]
    return ApiError(400, message, extra={"errors": errors})


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


def _dataset(request: Request) -> str:
    try:
        return str(request.app.state.store.get().name)
    except (AttributeError, RuntimeError):
        return ""


def error_page(request: Request, status: int, detail: str, headers: Any = None) -> Response:
    """The Chinese error page: the status, what it means, links home."""
    title, explanation = STATUS_TEXT.get(
        status, ("出错了", "请求没有完成。") if status < 500 else ("服务出错", "请稍后再试。")
    )
    root = str(request.scope.get("root_path", ""))
    ctx = {
        "request": request,
        "root": root,
        "static": root + "/static",
        "dataset": _dataset(request),
        "status": status,
        "title": title,
        "explanation": explanation,
        "detail": detail,
    }
    headers = {**(headers or {}), "Cache-Control": "no-store"}
    return TEMPLATES.TemplateResponse(request, "error.html", ctx, status, headers)


def _answer(request: Request, body: dict[str, Any], status: int, headers: Any = None) -> Response:
    """``body`` as JSON, or the error page when the request is a browser's page."""
    if wants_html(request):
        return error_page(request, status, str(body.get("detail", "")), headers)
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> Response:
        if wants_html(request):
            headers = exc.headers if isinstance(exc, ApiError) else None
            msg = f"{exc.field}: {exc.message}" if exc.field else exc.message
            return error_page(request, exc.status, msg, headers)
        return error_response(exc)

    # Refused edits (nothing was changed): the core's reasons mapped to their HTTP status.
    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        return _answer(request, _body(str(exc), []), 403)

    @app.exception_handler(EditError)
    async def _edit(request: Request, exc: EditError) -> Response:
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
        return _answer(request, body, status, headers)

    @app.exception_handler(InvalidRecord)
    async def _invalid(request: Request, exc: InvalidRecord) -> Response:
        return _answer(request, _body(str(exc), _problems(exc.problems)), 422)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
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
        return _answer(request, _body(summary, errors), 422)

    # The database is down or every connection is busy: nothing was written; try again.
    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _unavailable(request: Request, exc: Exception) -> Response:
        return _answer(
            request,
            _body("the database is unavailable; nothing was changed: retry shortly", []),
            503,
            {"Retry-After": str(DB_RETRY_AFTER_S)},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such path: {request.url.path}"
        return _answer(request, _body(detail, []), exc.status_code, getattr(exc, "headers", None))
