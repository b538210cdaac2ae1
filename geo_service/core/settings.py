"""Configuration from environment variables (prefix ``GEO_SERVICE_``) or a ``.env`` file."""

from __future__ import annotations

from pathlib import Path

from limits import parse
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "data"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GEO_SERVICE_", env_file=".env", extra="ignore")

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Folder with the embedded dataset files")
    dataset_name: str = "weifang-central"
    database_url: str | None = Field(None, description="PostGIS URL; unset = embedded files")
    db_pool_size: int = Field(8, ge=1, description="Most PostGIS connections per process")
    db_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Longest a request waits for a PostGIS connection (database down, or every "
        "connection busy); then 503 with Retry-After",
    )
    db_migrate_on_start: bool = Field(
        True, description="Create/upgrade the PostGIS tables when the service starts"
    )
    reload_poll_s: float = Field(
        0.5, gt=0, description="Embedded files: how often to look for changes by other processes"
    )
    snapshot_cache: bool = Field(
        True, description="Embedded files: keep validated layers on disk for a fast start-up"
    )
    snapshot_cache_dir: Path | None = Field(
        None, description="Where the snapshot cache is kept; unset: .geo_service.cache in data_dir"
    )
    public_base_url: str = Field(
        "http://127.0.0.1:8000", description="Base URL printed in QR codes and links"
    )
    host: str = "127.0.0.1"
    port: int = 8000
    forwarded_allow_ips: str = Field(
        "127.0.0.1,::1",
        description="serve: proxies (comma-separated addresses or networks, '*' for any) whose "
        "X-Forwarded-For / X-Forwarded-Proto name the client, for the rate limit and logs",
    )
    max_radius_m: float = Field(50_000.0, gt=0, description="Largest radius a query may ask for")
    max_bulk_points: int = Field(500_000, ge=100_000, description="Largest bulk locate request")
    max_k: int = Field(100, ge=1)
    page_limit_default: int = 100
    page_limit_max: int = 1000
    walk_speed_m_per_min: float = Field(
        70.0, gt=0, description="Walking speed for walk_minutes (4.2 km/h: an unhurried adult)"
    )
    walk_detour_factor: float = Field(
        1.3,
        ge=1.0,
        description="Street distance / straight-line distance for walk_minutes (about 1.3 in "
        "a city street grid)",
    )
    find_max_distance_m: float = Field(
        3000.0,
        gt=0,
        description="The resident pages (/find, a stall page's nearby stalls) list stalls within "
        "this many metres (3 km: about 55 minutes' walk at the default speed and detour)",
    )
    heavy_threads: int = Field(
        2, ge=1, description="Threads per worker for heavy requests (maps, coverage, bulk locate)"
    )
    heavy_queue: int = Field(
        16, ge=0, description="Heavy requests that may wait per worker; beyond that 503"
    )
    max_body_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest request body of a route without its own cap"
    )
    max_edit_body_bytes: int = Field(
        256 * 1024, ge=1024, description="Largest body of a single-feature create or change"
    )
    max_analysis_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="Largest body of coverage what-if and optimize"
    )
    max_upload_bytes: int = Field(
        200 * 1024 * 1024, ge=1024, description="Largest layer file uploaded to replace a layer"
    )
    max_json_depth: int = Field(
        32, ge=4, le=512, description="Deepest nesting of arrays/objects a JSON body may have"
    )
    rate_limit_enabled: bool = Field(True, description="Limit requests per client IP")
    rate_limit: str = Field(
        "600/minute", description="Requests per client IP, in limits' notation ('600/minute')"
    )
    rate_limit_storage: str = Field(
        "shm://",
        description="limits storage URI: shm:// (shared by the workers of this machine), "
        "memory:// (per process), redis://…, memcached://…",
    )
    rate_limit_exempt: list[str] = Field(
        ["/healthz", "/readyz", "/static/"],
        description="Path prefixes never rate limited (probes, static assets)",
    )

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        parse(value)  # ValueError for anything limits cannot read
        return value

    case_services_file: Path | None = Field(
        None,
        description="The 随手拍 categories (JSON); unset: case_services.json in data_dir, else the "
        "bundled list",
    )
    media_dir: Path | None = Field(
        None, description="Where report photos are stored; unset: media/ in data_dir"
    )
    case_snap_m: float = Field(
        200.0,
        ge=0,
        description="A report outside every grid goes to the nearest grid within this many "
        "metres, else to its district's intake queue",
    )
    case_duplicate_m: float = Field(
        50.0, gt=0, le=1000, description="Open cases of the same category this near are shown"
    )
    case_escalation_poll_s: float = Field(
        30.0, gt=0, description="How often each instance looks for cases past their deadline"
    )
    max_photo_bytes: int = Field(
        8 * 1024 * 1024, ge=64 * 1024, description="Largest photo a report may carry"
    )
    webhook_url: str | None = Field(
        None, description="POSTed a signed JSON notice on each case assignment and escalation"
    )
    webhook_secret: str = Field("", description="HMAC-SHA256 key of the webhook signature")

    tianditu_key: str | None = Field(None, description="Tianditu tile key (tk)")
    basemap: str = Field("amap", description="Default basemap: amap, tianditu or osm")


BUNDLED_CASE_SERVICES = DEFAULT_DATA_DIR / "case_services.json"


def case_services_path(settings: Settings) -> Path:
    if settings.case_services_file is not None:
        return settings.case_services_file
    local = settings.data_dir / "case_services.json"
    return local if local.exists() else BUNDLED_CASE_SERVICES


def media_path(settings: Settings) -> Path:
    return settings.media_dir or settings.data_dir / "media"


def report_body_bytes(settings: Settings) -> int:
    """The body cap of a filed report: its photo plus room for the form fields."""
    return settings.max_photo_bytes + 64 * 1024


BULK_BYTES_PER_POINT = 64  # "[119.123456789012, 36.123456789012], " is 38; room for spaces


def bulk_body_bytes(settings: Settings) -> int:
    """The body cap of bulk locate, derived from its point limit (plus room for the rest)."""
    return settings.max_bulk_points * BULK_BYTES_PER_POINT + 64 * 1024


def snapshot_cache_path(settings: Settings) -> Path | None:
    """The embedded backend's cache folder, or None when the cache is off."""
    if not settings.snapshot_cache:
        return None
    return settings.snapshot_cache_dir or settings.data_dir / ".geo_service.cache"
