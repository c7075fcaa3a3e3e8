"""ModelStore on roots other than a local path: the memory filesystem and file:// URLs."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from model_store import ChecksumMismatchError, ModelStore
from tests.model_store.helpers import FILES, make_draft


def test_memory_filesystem_full_cycle(memory_root: str) -> None:
    store = ModelStore(memory_root)
    v1 = store.publish("fraud", FILES, make_draft(), aliases=["prod"]).version
    v2 = store.publish("fraud", {"m.npz": b"2"}, make_draft(), aliases=["prod"]).version

    assert store.list_models() == ["fraud"]
    assert [m.version for m in store.list_versions("fraud")] == [v1, v2]
    assert store.load("fraud@prod").files == {"m.npz": b"2"}
    assert store.rollback("fraud", "prod").version == v1
    assert store.load("fraud@prod").files == FILES
    store.delete_version("fraud", v2)
    assert [m.version for m in store.list_versions("fraud")] == [v1]

    fs = fsspec.filesystem("memory")
    path = f"{memory_root}/fraud/versions/{v1}/model.npz"
    fs.pipe_file(path, b"tampered")
    with pytest.raises(ChecksumMismatchError):
        store.load("fraud@prod")
    assert fs.find(f"{memory_root}/fraud/.staging") == []


def test_memory_filesystem_crash_leaves_no_version(memory_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ModelStore(memory_root)
    original_mv = fsspec.filesystem("memory").__class__.mv
    moved: list[str] = []

    def crash_before_manifest(self: object, path1: str, path2: str, **kwargs: object) -> None:
        if path1.endswith("manifest.json"):
            raise OSError("connection lost")
        moved.append(path1)
        original_mv(self, path1, path2, **kwargs)

    monkeypatch.setattr(fsspec.filesystem("memory").__class__, "mv", crash_before_manifest)
    with pytest.raises(OSError, match="connection lost"):
        store.publish("fraud", FILES, make_draft())

    assert len(moved) == len(FILES)  # data files moved, manifest (moved last) never arrived
    assert store.list_models() == []


def test_file_url_root(tmp_path: Path) -> None:
    store = ModelStore((tmp_path / "viaurl").as_uri())
    version = store.publish("fraud", FILES, make_draft(), aliases=["prod"]).version

    assert (tmp_path / "viaurl" / "fraud" / "versions" / version / "manifest.json").exists()
    assert store.load("fraud@prod").files == FILES
