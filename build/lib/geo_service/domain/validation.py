"""Validating a whole layer file: rows against the schema, and for grids the topology too.

One function, so ``geo-service validate``, ``geo-service import`` and an upload through the API
judge a file identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd

from geo_service.core.layers import LoadReport, load_layer
from geo_service.core.schema import LayerName
from geo_service.core.topology import TopologyReport, check_grids


@dataclass
class FileValidation:
    layer: LayerName
    frame: gpd.GeoDataFrame  # the valid rows
    load: LoadReport
    topology: TopologyReport | None  # grids only

    @property
    def errors(self) -> int:
        return self.topology.error_count if self.topology else len(self.load.rejected)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def to_dict(self) -> dict[str, Any]:
        if self.topology is not None:
            return self.topology.to_dict()
        return {"ok": self.ok, "errors": self.errors, "rows": self.load.to_dict()}


def validate_file(path: str | Path, layer: LayerName, crs: str | None = None) -> FileValidation:
    """Raises ``LayerFileError`` when the file cannot be read as a layer at all."""
    frame, load = load_layer(path, layer, crs=crs, strict=True)
    topology = check_grids(frame, load) if layer is LayerName.grids else None
    return FileValidation(layer, frame, load, topology)
