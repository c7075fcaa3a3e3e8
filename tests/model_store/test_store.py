"""Behaviour of ModelStore's publish and load: the files and manifest, checksums, atomicity."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import model_store._fs as store_fs
from model_store import (
    ChecksumMismatchError,
    InvalidArtifactError,
    InvalidNameError,
    MissingArtifactError,
    ModelNotFoundError,
    ModelRef,
    ModelStore,
    VersionNotFoundError,
)
from tests.model_store.helpers import FILES, make_draft, version_dir

# -- construction, publish and load ----------------------------------------------------------


def test_constructor_does_no_io(tmp_path: Path) -> None:
    ModelStore(str(tmp_path / "absent"))
    ModelStore("nosuchprotocol://bucket/models")  # would fail if a filesystem were built
    assert not (tmp_path / "absent").exists()


def test_publish_then_load_returns_identical_files(store: ModelStore) -> None:
    published = store.publish("fraud", FILES, make_draft())

    loaded = store.load(f"fraud:{published.version}")

    assert loaded.files == FILES
    assert loaded.manifest == published
    assert store.resolve(ModelRef.for_version("fraud", published.version)) == published


def test_manifest_records_sha256_of_every_file(store: ModelStore, root: Path) -> None:
    published = store.publish("fraud", FILES, make_draft())

    expected = {name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()}
    assert published.files == expected
    on_disk = json.loads((version_dir(root, "fraud", published.version) / "manifest.json").read_text())
    assert on_disk["files"] == expected
    assert on_disk["name"] == "fraud" and on_disk["version"] == published.version
    assert on_disk["feature_names"] == ["amount", "age", "score"]
    assert published.created.endswith("+00:00")


def test_publish_copies_caller_inputs(store: ModelStore) -> None:
    files = {"model.npz": bytearray(b"abc")}
    metrics = {"accuracy": 0.5}
    published = store.publish("fraud", files, make_draft(holdout_metrics=metrics))  # type: ignore[arg-type]
    files["model.npz"][0:1] = b"X"
    metrics["accuracy"] = 0.0

    assert files == {"model.npz": bytearray(b"Xbc")}
    assert store.load(f"fraud:{published.version}").files == {"model.npz": b"abc"}
    assert published.holdout_metrics == {"accuracy": 0.5}


def test_versions_are_unique_and_sorted_oldest_first(store: ModelStore) -> None:
    published = [store.publish("fraud", {"m.npz": bytes([i])}, make_draft()).version for i in range(5)]

    listed = [m.version for m in store.list_versions("fraud")]

    assert len(set(published)) == 5
    assert listed == published == sorted(published)
    assert store.list_models() == ["fraud"]


def test_publish_rejects_bad_names_and_files(store: ModelStore, root: Path) -> None:
    with pytest.raises(InvalidNameError):
        store.publish("../escape", FILES, make_draft())
    with pytest.raises(InvalidNameError):
        store.publish("fraud", {"sub/dir.npz": b"x"}, make_draft())
    with pytest.raises(InvalidNameError, match="reserved"):
        store.publish("fraud", {"manifest.json": b"{}"}, make_draft())
    with pytest.raises(InvalidNameError):
        store.publish("fraud", FILES, make_draft(), aliases=["bad alias"])
    with pytest.raises(InvalidArtifactError):
        store.publish("fraud", {}, make_draft())
    with pytest.raises(InvalidArtifactError):
        store.publish("fraud", {"m.npz": "text"}, make_draft())  # type: ignore[dict-item]
    assert not root.exists()


# -- integrity ----------------------------------------------------------------------------------


def test_tampered_file_is_refused(store: ModelStore, root: Path) -> None:
    published = store.publish("fraud", FILES, make_draft(), aliases=["prod"])
    path = version_dir(root, "fraud", published.version) / "model.npz"
    data = bytearray(path.read_bytes())
    data[3] ^= 0x01
    path.write_bytes(bytes(data))

    with pytest.raises(ChecksumMismatchError, match=r"'model\.npz'") as caught:
        store.load("fraud@prod")

    assert published.files["model.npz"] in str(caught.value)


def test_missing_file_is_refused(store: ModelStore, root: Path) -> None:
    published = store.publish("fraud", FILES, make_draft())
    (version_dir(root, "fraud", published.version) / "labels.json").unlink()

    with pytest.raises(MissingArtifactError, match=r"'labels\.json'"):
        store.load(f"fraud:{published.version}")


# -- atomic publish -----------------------------------------------------------------------------


def test_crash_while_moving_into_place_leaves_no_version(
    store: ModelStore, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def power_cut(self: store_fs.StoreFS, source: str, target: str, *, last: str) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(store_fs.StoreFS, "move_dir", power_cut)
    with pytest.raises(OSError, match="power cut"):
        store.publish("fraud", FILES, make_draft(), aliases=["prod"])

    assert store.list_models() == []
    with pytest.raises(ModelNotFoundError, match="'fraud'"):
        store.resolve("fraud@prod")
    assert list((root / "fraud" / ".staging").iterdir()) == []
    assert not (root / "fraud" / "aliases").exists()


def test_crash_before_manifest_is_written_leaves_no_version(store: ModelStore, monkeypatch: pytest.MonkeyPatch) -> None:
    original = store_fs.StoreFS.write_bytes

    def fail_on_manifest(self: store_fs.StoreFS, path: str, data: bytes) -> None:
        if path.endswith("/manifest.json"):
            raise OSError("disk full")
        original(self, path, data)

    monkeypatch.setattr(store_fs.StoreFS, "write_bytes", fail_on_manifest)
    with pytest.raises(OSError, match="disk full"):
        store.publish("fraud", FILES, make_draft())

    assert store.list_models() == []
    with pytest.raises(ModelNotFoundError):
        store.list_versions("fraud")


def test_leftovers_of_a_hard_crash_are_invisible(store: ModelStore, root: Path) -> None:
    good = store.publish("fraud", FILES, make_draft())
    staging = root / "fraud" / ".staging" / "abc123"
    staging.mkdir(parents=True)
    (staging / "model.npz").write_bytes(b"half")
    (staging / "manifest.json").write_text(good.to_json())
    partial = version_dir(root, "fraud", "20990101T000000.000000Z-deadbeef")
    partial.mkdir(parents=True)
    (partial / "model.npz").write_bytes(b"no manifest yet")

    assert [m.version for m in store.list_versions("fraud")] == [good.version]
    with pytest.raises(VersionNotFoundError, match="deadbeef"):
        store.resolve("fraud:20990101T000000.000000Z-deadbeef")
