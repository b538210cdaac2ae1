"""Configuration from environment variables (prefix ``GEO_SERVICE_``) or a ``.env`` file."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "data"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GEO_SERVICE_", env_file=".env", extra="ignore")

    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Folder with the embedded dataset files")
    dataset_name: str = "weifang-central"
    database_url: str | None = Field(None, description="PostGIS URL; unset = embedded files")
    db_pool_size: int = Field(8, ge=1, description="Most PostGIS connections per process")
    db_migrate_on_start: bool = Field(
        True, description="Create/upgrade the PostGIS tables when the service starts"
    )
    reload_poll_s: float = Field(
        0.5, gt=0, description="Embedded files: how often to look for changes by other processes"
    )
    public_base_url: str = Field(
        "http://127.0.0.1:8000", description="Base URL printed in QR codes and links"
    )
    host: str = "127.0.0.1"
    port: int = 8000
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
    heavy_threads: int = Field(
        2, ge=1, description="Threads per worker for heavy requests (maps, coverage, bulk locate)"
    )
    heavy_queue: int = Field(
        16, ge=0, description="Heavy requests that may wait per worker; beyond that 503"
    )
    tianditu_key: str | None = Field(None, description="Tianditu tile key (tk)")
    basemap: str = Field("amap", description="Default basemap: amap, tianditu or osm")
