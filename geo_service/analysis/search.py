"""One search over grids, communities, streets, stalls and vendor clusters.

By code (prefix), Chinese name (prefix, then substring) and pinyin (the full syllables,
``bailangxincun``, or their initials, ``blxc``, via ``pypinyin``). The index is built once per
snapshot (a few hundred milliseconds for the default data: pinyin of every distinct name) and
matched with vectorised pandas string operations.
"""

from __future__ import annotations

import re
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import shapely
from pypinyin import lazy_pinyin

from geo_service.core.snapshot import Snapshot

KINDS = ("street", "community", "grid", "stall", "vendor_cluster")  # also the order within a rank
MAX_QUERY = 50

# rank → what matched, best first
MATCHES = ("code", "code", "name_prefix", "name", "pinyin", "initials")
_LETTERS = re.compile(r"[^a-z0-9]")


@dataclass(frozen=True)
class SearchResult:
    kind: str
    code: str
    name: str
    match: str
    lon: float
    lat: float
    grid_code: str | None  # the grid a point lies in (or the grid itself)


def pinyin_keys(name: str) -> tuple[str, str]:
    """Full pinyin without tones or separators, and the initials, lower case, letters/digits."""
    # characters without pinyin (digits, latin, brackets) come back as one piece per run
    syllables = [p for part in lazy_pinyin(name) for p in part.split()]
    full = _LETTERS.sub("", "".join(syllables).lower())
    initials = _LETTERS.sub("", "".join(s[:1] for s in syllables).lower())
    return full, initials


def _frame(snap: Snapshot) -> pd.DataFrame:
    parts: list[pd.DataFrame] = []
    grids = snap.grids
    if len(grids):
        pts = shapely.point_on_surface(grids.frame.geometry.to_numpy())
        parts.append(
            pd.DataFrame(
                {
                    "kind": "grid",
                    "code": grids.codes,
                    "name": grids.frame["name"].to_numpy(dtype=object),
                    "lon": shapely.get_x(pts),
                    "lat": shapely.get_y(pts),
                    "grid_code": grids.codes,
                }
            )
        )
        for level in ("community", "street"):
            units = snap.units(level)
            pts = shapely.point_on_surface(units.geometry.to_numpy())
            parts.append(
                pd.DataFrame(
                    {
                        "kind": level,
                        "code": units["code"].to_numpy(dtype=object),
                        "name": units["name"].to_numpy(dtype=object),
                        "lon": shapely.get_x(pts),
                        "lat": shapely.get_y(pts),
                        "grid_code": None,
                    }
                )
            )
    for kind, layer in (("stall", snap.stalls), ("vendor_cluster", snap.vendor_clusters)):
        if not len(layer):
            continue
        with_none = np.append(grids.codes, np.array([None], dtype=object))
        parts.append(
            pd.DataFrame(
                {
                    "kind": kind,
                    "code": layer.codes,
                    "name": layer.frame["name"].to_numpy(dtype=object),
                    "lon": layer.index.lon,
                    "lat": layer.index.lat,
                    "grid_code": with_none[layer.grid_index],  # -1 picks the trailing None
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=["kind", "code", "name", "lon", "lat", "grid_code"])
    frame = pd.concat(parts, ignore_index=True)
    frame["name"] = frame["name"].fillna("").astype(str)
    keys = {n: pinyin_keys(n) for n in frame["name"].unique()}
    frame["pinyin"] = frame["name"].map(lambda n: keys[n][0])
    frame["initials"] = frame["name"].map(lambda n: keys[n][1])
    frame["code_uc"] = frame["code"].astype(str).str.upper()
    frame["kind_order"] = frame["kind"].map({k: i for i, k in enumerate(KINDS)})
    frame["name_len"] = frame["name"].str.len()
    return frame


_INDEX: weakref.WeakKeyDictionary[Snapshot, pd.DataFrame] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def search_index(snap: Snapshot) -> pd.DataFrame:
    """The search frame of ``snap``, built on first use and kept as long as the snapshot."""
    with _LOCK:
        found = _INDEX.get(snap)
        if found is None:
            found = _INDEX[snap] = _frame(snap)
    return found


def search(snap: Snapshot, query: str, limit: int) -> tuple[list[SearchResult], int]:
    """The best ``limit`` matches of ``query`` and how many features match in all, ranked:
    exact code, code prefix, name prefix, name substring, pinyin, pinyin initials (then
    streets before communities, grids, stalls, vendor clusters; shorter names; code)."""
    q = query.strip()[:MAX_QUERY]
    frame = search_index(snap)
    if not q or frame.empty:
        return [], 0
    rank = np.full(len(frame), len(MATCHES), dtype=np.int64)

    def better(mask: Any, r: int) -> None:
        m = np.asarray(mask, dtype=bool)
        np.minimum(rank, np.where(m, r, len(MATCHES)), out=rank)

    latin = _LETTERS.sub("", q.lower())
    if latin and latin == re.sub(r"[\s'-]", "", q.lower()) and latin.isalpha():
        better(frame["initials"].str.contains(latin, regex=False), 5)
        better(frame["pinyin"].str.contains(latin, regex=False), 4)
    better(frame["name"].str.contains(q, regex=False), 3)
    better(frame["name"].str.startswith(q), 2)
    uq = q.upper()
    better(frame["code_uc"].str.startswith(uq), 1)
    better(frame["code_uc"] == uq, 0)
    hits = np.flatnonzero(rank < len(MATCHES))
    if not len(hits):
        return [], 0
    # code matches in code order; name matches shorter names first
    found = frame.iloc[hits].assign(rank=rank[hits])
    found["name_len"] = found["name_len"].where(found["rank"] > 1, 0)
    found = found.sort_values(["rank", "kind_order", "name_len", "code"]).head(max(limit, 0))
    out = [
        SearchResult(
            kind=row.kind,
            code=str(row.code),
            name=row.name,
            match=MATCHES[int(row.rank)],
            lon=round(float(row.lon), 7),
            lat=round(float(row.lat), 7),
            grid_code=row.grid_code if isinstance(row.grid_code, str) else None,
        )
        for row in found.itertuples(index=False)
    ]
    return out, len(hits)
