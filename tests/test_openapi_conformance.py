"""The OpenAPI document tells the truth: schemathesis calls every read operation with inputs drawn
from /openapi.json and checks each answer against it (status code, content type, headers, body
schema, never a 5xx).

One backend suffices (the files backend): this tests the document, not the storage. Examples are
bounded per operation and generation is deterministic, so the file is quick and repeatable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from geo_service.core.principal import Role
from geo_service.core.settings import Settings
from geo_service.core.snapshot import SnapshotStore
from geo_service.storage.files import FilesBackend
from geo_service.storage.reloader import snapshot_of
from geo_service.web.app import create_app
from tests.backends import copy_data
from tests.keys import key_for

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = 15
# Coverage figures, gaps and whole-city maps take tenths of a second per call, and schemathesis'
# coverage phase (boundary and invalid values of each parameter and their combinations, not
# bounded by max-examples) makes 100-200 calls to an operation with as many parameters. These get
# their schema examples and a few fuzzed cases only; their parameters are the shared coverage
# ones, which the coverage phase of GET /api/v1/coverage/check (cheap) exercises in full.
HEAVY = {
    "^/api/v1/coverage$": 15,
    "^/api/v1/coverage/gaps$": 5,
    "^/maps/(overview|coverage|cases)$": 4,
}
ADMIN_KEY_OPERATIONS = ("/api/v1/audit",)
READ_ONLY_POST = ("POST", "/api/v1/grids/locate")


def conformance_config() -> SchemathesisConfig:
    generation = {"deterministic": True, "database": "none", "mode": "all"}
    heavy = [
        {
            "include-path-regex": path,
            "generation": {**generation, "max-examples": n},
            "phases": {"coverage": {"enabled": False}},
        }
        for path, n in HEAVY.items()
    ]
    return SchemathesisConfig.from_dict(
        {
            "generation": {**generation, "max-examples": EXAMPLES},
            "phases": {"stateful": {"enabled": False}},
            "operations": heavy,
        }
    )


@pytest.fixture(scope="module")
def conformance_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, str]]:
    """The app on a private copy of the default data, and an admin key for the audit log."""
    backend = FilesBackend(copy_data(tmp_path_factory.mktemp("data-openapi")))
    settings = Settings(data_dir=Path(backend.data_dir), public_base_url="http://testserver")
    store = SnapshotStore(snapshot_of(backend.load(), "weifang-central"))
    app = create_app(settings, store, backend)
    admin = key_for(backend, "openapi-admin", Role.admin)
    with TestClient(app):  # runs the lifespan (reloader) while the module's tests run
        yield app, admin


def document_app() -> FastAPI:
    """An app for its document alone: nothing is loaded until its lifespan runs, and the
    document does not depend on the data (``test_the_document_is_the_served_one``)."""
    return create_app(Settings(data_dir=DATA_DIR), SnapshotStore(), FilesBackend(DATA_DIR))


def is_write(ctx: Any) -> bool:
    """Writes are left out (they have tests of their own), except the read-only bulk locate."""
    op = ctx.operation
    return op.method.upper() != "GET" and (op.method.upper(), op.path) != READ_ONLY_POST


# Loaded when the module is collected: schemathesis makes one test per operation from it (its
# lazy ``schemathesis.pytest.from_fixture`` fails under pytest 9.2, which has no
# ``Node._nodeid``); the calls go to the ``conformance_app`` fixture's app. Writes are excluded
# rather than reads included: the per-operation entries of the config count as includes.
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", document_app(), config=conformance_config()
).exclude(is_write)


@schema.parametrize()
def test_answers_conform_to_the_document(case: Any, conformance_app: tuple[FastAPI, str]) -> None:
    app, admin = conformance_app
    headers = {"X-API-Key": admin} if case.path in ADMIN_KEY_OPERATIONS else None
    case.call_and_validate(headers=headers, checks=CHECKS, app=app)


# --- the document declares the real schemas ---------------------------------------------------


@pytest.fixture(scope="module")
def spec(conformance_app: tuple[FastAPI, str]) -> dict[str, Any]:
    app, _ = conformance_app
    body: dict[str, Any] = TestClient(app).get("/openapi.json").json()
    return body


def response_schema(
    spec: dict[str, Any], method: str, path: str, status: int, media: str = "application/json"
) -> dict[str, Any]:
    schema: dict[str, Any] = spec["paths"][path][method]["responses"][str(status)]["content"][
        media
    ]["schema"]
    return schema


REF = "#/components/schemas/"


@pytest.mark.parametrize(
    ("method", "path", "status", "media", "model"),
    [
        ("get", "/api/v1/grids/locate", 200, "application/json", "LocateResponse"),
        ("get", "/api/v1/grids/locate", 422, "application/json", "ErrorBody"),
        ("post", "/api/v1/grids/locate", 200, "application/json", "BulkLocateResponse"),
        ("get", "/api/v1/grids", 200, "application/geo+json", "FeatureCollection"),
        ("get", "/api/v1/grids", 404, "application/json", "ErrorBody"),
        ("get", "/api/v1/grids/{code}", 200, "application/geo+json", "Feature"),
        ("get", "/api/v1/grids/{code}", 404, "application/json", "ErrorBody"),
        ("get", "/api/v1/stalls/nearest", 200, "application/json", "NearestStallsResponse"),
        ("get", "/api/v1/meta", 200, "application/json", "Meta"),
        ("get", "/api/v1/coverage", 200, "application/json", "CoverageResponse"),
        ("get", "/maps/data/grids", 200, "application/geo+json", "MapGrids"),
        ("patch", "/api/v1/stalls/{code}", 200, "application/geo+json", "Feature"),
        ("patch", "/api/v1/stalls/{code}", 409, "application/json", "ConflictBody"),
        ("patch", "/api/v1/stalls/{code}", 428, "application/json", "ErrorBody"),
        ("put", "/api/v1/layers/{layer}", 401, "application/json", "ErrorBody"),
        ("put", "/api/v1/layers/{layer}", 422, "application/json", "RejectedUpload"),
        ("get", "/api/v1/coverage/gaps", 200, "application/geo+json", "GapsResponse"),
        ("get", "/api/v1/stalls/{code}/qr.png", 404, "application/json", "ErrorBody"),
        ("get", "/api/v1/audit", 200, "application/json", "AuditPage"),
        ("get", "/readyz", 503, "application/json", "Health"),
    ],
)
def test_operations_declare_their_models(
    spec: dict[str, Any], method: str, path: str, status: int, media: str, model: str
) -> None:
    assert response_schema(spec, method, path, status, media) == {"$ref": REF + model}


def test_the_document_is_the_served_one(spec: dict[str, Any]) -> None:
    assert spec == schema.raw_schema


def test_error_body_replaces_fastapis_validation_error(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert set(schemas["ErrorBody"]["required"]) == {"detail", "errors"}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            for status in ("413", "429", "503"):
                assert status in op["responses"], (method, path, status)


def test_every_json_answer_has_a_model(spec: dict[str, Any]) -> None:
    for path, item in spec["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                for media, content in response.get("content", {}).items():
                    if media == "application/json" or media.endswith("+json"):
                        assert "$ref" in content["schema"], (method, path, status, media)


def test_features_declare_their_etag(spec: dict[str, Any]) -> None:
    for method, path in [
        ("get", "/api/v1/grids/{code}"),
        ("get", "/api/v1/stalls/{code}"),
        ("patch", "/api/v1/vendor-clusters/{code}"),
    ]:
        assert "ETag" in spec["paths"][path][method]["responses"]["200"]["headers"]
    assert "ETag" in spec["paths"]["/api/v1/stalls"]["post"]["responses"]["201"]["headers"]


def test_non_json_answers_declare_their_media_types(spec: dict[str, Any]) -> None:
    def media(path: str) -> set[str]:
        return set(spec["paths"][path]["get"]["responses"]["200"]["content"])

    assert media("/api/v1/stalls/{code}/qr.svg") == {"image/svg+xml"}
    assert media("/api/v1/stalls/{code}/qr.png") == {"image/png"}
    assert media("/maps/overview") == {"text/html"}
    assert media("/api/v1/audit") == {"application/json", "text/csv", "application/x-ndjson"}
