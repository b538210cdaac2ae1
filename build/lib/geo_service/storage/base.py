"""What a storage backend does: the single source of truth behind the in-memory snapshot.

Two backends share this contract: the embedded GeoJSON files (``files.py``) and PostGIS
(``postgis.py``). Queries never hit a backend; they read the snapshot, which is rebuilt from
``load()`` after every change, here or (learned through ``subscribe``) in another process.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Protocol

import geopandas as gpd

from geo_service.core.layers import LoadReport
from geo_service.core.principal import ApiKeyRecord, Principal
from geo_service.core.schema import LayerName
from geo_service.storage.audit import AuditEntry, AuditQuery
from geo_service.storage.records import Record

# Gets the current record (None if there is none) and returns the record to store, or None to
# store nothing. It runs while the backend holds the feature locked, so the version it checks
# is the version it replaces; it raises to refuse the change (and nothing is written).
Mutation = Callable[[Record | None], Record | None]

# Per layer, a cheap token that changes whenever that layer does: a reload reads only the
# layers whose token moved (a stall edit re-reads 128 stalls, not 1,355 grids).
Revisions = dict[LayerName, str]


@dataclass
class Loaded:
    """Layers, validated, plus what identifies this state of the data."""

    frames: dict[LayerName, gpd.GeoDataFrame]  # a layer with no data at all may be absent
    version: str  # the dataset version shown to clients
    revisions: Revisions  # of the layers loaded, read before (or with) their data
    reports: list[LoadReport] = field(default_factory=list)


@dataclass(frozen=True)
class Change:
    before: Record | None
    after: Record | None
    entry: AuditEntry | None  # None when the mutation changed nothing


@dataclass(frozen=True)
class ReplaceResult:
    layer: LayerName
    summary: dict[str, int]
    entries: int


class Subscription(Protocol):
    def close(self) -> None: ...


class Backend(Protocol):
    name: str

    def migrate(self) -> None:
        """Create or upgrade whatever the backend needs (tables, indexes)."""

    def load(self, layers: Collection[LayerName] | None = None) -> Loaded:
        """Every layer, or only ``layers``."""

    def revisions(self) -> Revisions:
        """Each layer's current token (cheap: called on every change notice)."""

    def get(self, layer: LayerName, code: str) -> Record | None: ...

    def modify(
        self, layer: LayerName, code: str, mutation: Mutation, who: Principal, action: str
    ) -> Change:
        """Apply ``mutation`` to one feature atomically, bump its version, write the audit."""

    def replace_layer(
        self, layer: LayerName, records: list[Record], who: Principal, source: str
    ) -> ReplaceResult:
        """Replace a whole layer atomically; unchanged features keep their version."""

    def audit(self, query: AuditQuery) -> tuple[list[AuditEntry], int]:
        """Entries matching ``query`` (one page) and how many match in all."""

    def subscribe(self, callback: Callable[[], None]) -> Subscription:
        """Call ``callback`` (from another thread) when the data may have changed elsewhere."""

    def get_key(self, key_id: str) -> ApiKeyRecord | None: ...

    def list_keys(self) -> list[ApiKeyRecord]: ...

    def put_key(self, record: ApiKeyRecord) -> None: ...

    def close(self) -> None: ...
