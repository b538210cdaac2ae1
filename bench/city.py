"""The synthetic city the benchmarks share, written once into ``bench/out`` (git-ignored)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from geo_service.core.snapshot import Snapshot
from geo_service.storage.dataset import load_dataset
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


def load_city(n_grids: int, say: Callable[[str], None]) -> tuple[Path, Snapshot]:
    """The city's folder, and the city loaded as the service loads it (the time taken said)."""
    data_dir = city_dir(n_grids)
    t0 = time.perf_counter()
    snap = load_dataset(data_dir, name="synthetic")
    say(f"{len(snap.grids):,} grids from {data_dir} loaded in {time.perf_counter() - t0:.1f} s")
    return data_dir, snap
