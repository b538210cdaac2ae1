"""The embedded dataset: one GeoJSON file per layer in a folder (``data/`` by default)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import geopandas as gpd

from geo_service.core.layers import LoadReport, load_layer
from geo_service.core.schema import SCHEMAS, LayerName
from geo_service.core.snapshot import Snapshot, build_snapshot
from geo_service.core.versions import with_versions

LAYER_FILES: dict[LayerName, str] = {name: f"{name.value}.geojson" for name in SCHEMAS}


def layer_path(data_dir: Path, layer: LayerName) -> Path:
    return Path(data_dir) / LAYER_FILES[layer]


def dataset_version(data_dir: Path) -> str:
    """Content hash of the layer files: changes exactly when the data does."""
    h = hashlib.sha256()
    for layer in SCHEMAS:
        p = layer_path(data_dir, layer)
        if p.exists():
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


def read_dataset(
    data_dir: Path, layers: Iterable[LayerName] | None = None
) -> tuple[dict[LayerName, gpd.GeoDataFrame], list[LoadReport]]:
    """Read and validate the layer files (all, or only ``layers``); grids must exist."""
    frames: dict[LayerName, gpd.GeoDataFrame] = {}
    reports: list[LoadReport] = []
    for layer in SCHEMAS if layers is None else layers:
        path = layer_path(data_dir, layer)
        if not path.exists():
            if layer is LayerName.grids:
                raise FileNotFoundError(f"{path}: the grids layer is required")
            continue
        frame, report = load_layer(path, layer)
        frames[layer] = with_versions(frame)
        reports.append(report)
    return frames, reports


def load_dataset(data_dir: Path, name: str = "weifang-central") -> Snapshot:
    frames, reports = read_dataset(data_dir)
    return build_snapshot(
        frames, name=name, version=dataset_version(data_dir), reports=tuple(reports)
    )
