"""The synthetic city the benchmarks share, written once into ``bench/out`` (git-ignored)."""

from __future__ import annotations

from pathlib import Path

from geo_service.storage.synth import write_city

OUT = Path(__file__).resolve().parent / "out"


def city_dir(n_grids: int, n_stalls: int = 1000, n_clusters: int = 1000) -> Path:
    """Folder with grids/stalls/vendor_clusters GeoJSON of ``n_grids`` grids; reused if present."""
    name = f"city{n_grids // 1000}k" if n_grids % 1000 == 0 else f"city{n_grids}"
    out = OUT / name
    layers = ("grids", "stalls", "vendor_clusters")
    if not all((out / f"{layer}.geojson").exists() for layer in layers):
        write_city(out, n_grids, n_stalls, n_clusters)
    return out
