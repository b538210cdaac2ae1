"""The snapshot cache: used while its source is unchanged, rebuilt when it changes, and never
trusted when damaged. Every check compares with a load that does not use the cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from geopandas.testing import assert_geodataframe_equal

from geo_service.core.principal import Principal, Role
from geo_service.core.schema import LayerName
from geo_service.core.snapshot import build_snapshot
from geo_service.core.versions import IfMatch
from geo_service.domain.editing import update
from geo_service.storage.base import Loaded
from geo_service.storage.files import FilesBackend
from geo_service.storage.snapcache import TMP_SUFFIX
from geo_service.storage.synth import write_city

ADMIN = Principal(Role.admin, "cache-test")


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("snapcache-city")
    write_city(out, 300, 12, 12)
    return out


@pytest.fixture
def data(city: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(city, tmp_path / "data"))


def cached(data: Path) -> FilesBackend:
    return FilesBackend(data, cache_dir=data / ".cache")


def assert_same(got: Loaded, want: Loaded) -> None:
    """Same frames, reports and version; and the snapshots built from them agree."""
    assert set(got.frames) == set(want.frames)
    for layer, frame in want.frames.items():
        assert_geodataframe_equal(got.frames[layer], frame, check_less_precise=False)
    assert got.reports == want.reports
    assert got.version == want.version
    a = build_snapshot(got.frames, "t", got.version)
    b = build_snapshot(want.frames, "t", want.version)
    assert a.grids.properties == b.grids.properties
    assert a.stalls.records == b.stalls.records
    np.testing.assert_array_equal(a.stalls.grid_index, b.stalls.grid_index)
    for level in ("community", "street", "district"):
        assert_geodataframe_equal(a.units(level), b.units(level))


def test_a_fresh_cache_is_used_and_equals_a_cold_load(data: Path) -> None:
    cold = FilesBackend(data).load()
    first = cached(data)
    assert_same(first.load(), cold)
    assert first.cache is not None and first.cache.builds == 3
    again = cached(data)
    assert_same(again.load(), cold)
    assert again.cache is not None and (again.cache.hits, again.cache.builds) == (3, 0)


def test_an_edited_layer_is_rebuilt_and_equals_a_cold_load(data: Path) -> None:
    cached(data).load()
    stall = str(FilesBackend(data).load().frames[LayerName.stalls]["code"].iloc[3])
    mutation = update(
        LayerName.stalls, ADMIN, {"name": "改过的名字"}, None,
        IfMatch(False, frozenset({1})), lambda rec: rec.code,
    )  # fmt: skip
    FilesBackend(data).modify(LayerName.stalls, stall, mutation, ADMIN, "update")
    backend = cached(data)
    got = backend.load()
    assert backend.cache is not None and (backend.cache.hits, backend.cache.builds) == (2, 1)
    frame = got.frames[LayerName.stalls]
    assert frame.loc[frame["code"] == stall, "name"].tolist() == ["改过的名字"]
    assert_same(got, FilesBackend(data).load())


def test_a_touched_source_with_the_same_bytes_keeps_its_entry(data: Path) -> None:
    cached(data).load()
    st = (data / "grids.geojson").stat()
    os.utime(data / "grids.geojson", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    backend = cached(data)
    assert_same(backend.load(), FilesBackend(data).load())
    assert backend.cache is not None and (backend.cache.hits, backend.cache.builds) == (3, 0)


@pytest.mark.parametrize("damage", ["truncated", "flipped", "empty", "other-layer"])
def test_a_damaged_entry_is_ignored_and_rebuilt(data: Path, damage: str) -> None:
    cached(data).load()
    entry = data / ".cache" / "grids.snap"
    raw = entry.read_bytes()
    if damage == "truncated":
        entry.write_bytes(raw[: len(raw) // 2])
    elif damage == "flipped":
        entry.write_bytes(raw[:-100] + bytes([raw[-100] ^ 0xFF]) + raw[-99:])
    elif damage == "empty":
        entry.write_bytes(b"")
    else:  # a whole, valid entry, but of another source
        shutil.copyfile(data / ".cache" / "stalls.snap", entry)
    backend = cached(data)
    assert_same(backend.load(), FilesBackend(data).load())
    assert backend.cache is not None and backend.cache.builds == 1
    again = cached(data)  # the rebuilt entry is whole again
    again.load()
    assert again.cache is not None and again.cache.builds == 0


def test_an_entry_is_renamed_into_place_or_not_written(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails before its rename leaves no entry and no temporary file."""

    def crash(src: object, dst: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr("geo_service.storage.snapcache.os.replace", crash)
    got = cached(data).load()
    monkeypatch.undo()
    assert_same(got, FilesBackend(data).load())
    assert list((data / ".cache").iterdir()) == []
    assert not list((data / ".cache").glob(f"*{TMP_SUFFIX}"))


def test_an_entry_of_other_code_is_rebuilt(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation rules (or the libraries) changed since the entry was written: rebuilt."""
    cached(data).load()
    monkeypatch.setattr("geo_service.storage.snapcache.producer", lambda: "other code")
    backend = cached(data)
    assert_same(backend.load(), FilesBackend(data).load())
    assert backend.cache is not None and backend.cache.builds == 3
