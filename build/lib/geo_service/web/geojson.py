"""GeoJSON features from snapshot layers, geometry serialised in bulk by shapely."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import shapely

from geo_service.core.snapshot import Snapshot
from geo_service.web.links import PublicURL


def geometries_json(geoms: npt.NDArray[np.object_]) -> list[orjson.Fragment]:
    """Pre-serialised geometry JSON, embedded as-is by orjson (stored coordinates are already
    rounded to 7 decimals, about 1 cm)."""
    if len(geoms) == 0:
        return []
    return [orjson.Fragment(s) for s in shapely.to_geojson(geoms)]


def feature(fid: str, geometry: Any, properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "id": fid, "geometry": geometry, "properties": properties}


def collection(
    features: list[dict[str, Any]],
    matched: int,
    url: PublicURL | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> dict[str, Any]:
    """A FeatureCollection with OGC API Features paging fields; ``url`` is this page on the
    public base (``web.links.public_url``), so the links never carry the client's ``Host``."""
    nxt = None
    links = []
    if url is not None:
        links.append({"rel": "self", "href": str(url), "type": "application/geo+json"})
        if limit is not None and offset + len(features) < matched:
            nxt = url.with_params(offset=offset + len(features), limit=limit)
            links.append({"rel": "next", "href": nxt, "type": "application/geo+json"})
    return {
        "type": "FeatureCollection",
        "numberMatched": matched,
        "numberReturned": len(features),
        "next": nxt,
        "links": links,
        "features": features,
    }


def grid_feature(snap: Snapshot, i: int) -> dict[str, Any]:
    props = dict(snap.grids.properties[i])
    counts = snap.counts_per_grid
    props["counts"] = {layer.value: int(c[i]) for layer, c in counts.items()}
    geom = geometries_json(snap.grids.frame.geometry.to_numpy()[[i]])[0]
    return feature(props["code"], geom, props)
