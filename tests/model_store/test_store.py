"""Behaviour of ModelStore: publish, load, checksums, atomicity, aliases, concurrency."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

import model_store._fs as store_fs
from model_store import (
    AliasInUseError,
    AliasNotFoundError,
    ChecksumMismatchError,
    ConcurrentUpdateError,
    CorruptAliasError,
    InvalidArtifactError,
    InvalidModelRefError,
    InvalidNameError,
    ManifestDraft,
    MissingArtifactError,
    ModelNotFoundError,
    ModelRef,
    ModelStore,
    ModelStoreError,
    NoPreviousVersionError,
    VersionNotFoundError,
    parse_model_ref,
)
from stream.errors import KnnStreamError

FILES = {"model.npz": b"\x93NUMPY fake model bytes", "labels.json": b'["fraud", "ok"]'}


def make_draft(**overrides: object) -> ManifestDraft:
    values: dict[str, object] = {
        "task": "classification",
        "k": 5,
        "metric": "euclidean",
        "feature_names": ("amount", "age", "score"),
        "n_features": 3,
        "training_rows": 1000,
        "backend": "numpy",
        "format": "npz",
        "classes": ("fraud", "ok"),
        "holdout_metrics": {"accuracy": 0.93},
        "library_versions": {"numpy": "2.1.0"},
    }
    values.update(overrides)
    return ManifestDraft(**values)  # type: ignore[arg-type]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(root: Path) -> ModelStore:
    return ModelStore(str(root))


def version_dir(root: Path, name: str, version: str) -> Path:
    return root / name / "versions" / version


def alias_file(root: Path, name: str, alias: str) -> dict[str, object]:
    data = json.loads((root / name / "aliases" / f"{alias}.json").read_text())
    assert isinstance(data, dict)
    return data


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


# -- resolve errors -----------------------------------------------------------------------------


def test_resolve_errors_name_what_was_sought_and_what_exists(store: ModelStore) -> None:
    published = store.publish("fraud", FILES, make_draft(), aliases=["prod"])

    with pytest.raises(ModelNotFoundError, match=r"'churn'.*\['fraud'\]"):
        store.resolve("churn@prod")
    with pytest.raises(AliasNotFoundError, match=rf"'staging'.*'prod': '{published.version}'"):
        store.resolve("fraud@staging")
    with pytest.raises(VersionNotFoundError, match=published.version):
        store.resolve("fraud:20000101T000000.000000Z-00000000")
    with pytest.raises(ModelNotFoundError):
        store.aliases("churn")


@pytest.mark.parametrize(
    "text",
    [
        "fraud",
        "",
        "fraud@",
        "@prod",
        "fraud:",
        ":v1",
        "a@b:c",
        "fraud@@prod",
        "fraud::v1",
        "fr aud@prod",
        "../etc@prod",
        "fraud@prod/x",
        ".hidden@prod",
        "fraud@prod\n",
    ],
)
def test_invalid_refs_are_refused(store: ModelStore, text: str) -> None:
    with pytest.raises(InvalidModelRefError):
        parse_model_ref(text)
    with pytest.raises(InvalidModelRefError):
        store.resolve(text)


def test_valid_refs_parse() -> None:
    assert parse_model_ref("fraud@prod") == ModelRef(name="fraud", alias="prod")
    assert parse_model_ref("fraud:20261127T031502Z-3fa9c1") == ModelRef.for_version("fraud", "20261127T031502Z-3fa9c1")
    assert str(parse_model_ref("fraud@prod")) == "fraud@prod"
    assert parse_model_ref("fraud@prod").is_alias
    assert issubclass(InvalidModelRefError, ModelStoreError)
    assert issubclass(ModelStoreError, KnnStreamError)
    with pytest.raises(InvalidModelRefError):
        ModelRef(name="fraud", alias="prod", version="v1")


# -- aliases ------------------------------------------------------------------------------------


def test_promote_and_rollback_keep_history(store: ModelStore, root: Path) -> None:
    v1 = store.publish("fraud", FILES, make_draft(), aliases=["prod", "staging"]).version
    v2 = store.publish("fraud", {"m.npz": b"2"}, make_draft()).version
    v3 = store.publish("fraud", {"m.npz": b"3"}, make_draft(), aliases=["staging"]).version

    change = store.promote("fraud", "prod", v2)
    assert (change.previous, change.version, change.changed) == (v1, v2, True)
    store.promote("fraud", "prod", v3)
    assert store.aliases("fraud") == {"prod": v3, "staging": v3}
    record = alias_file(root, "fraud", "prod")
    assert record["version"] == v3 and record["history"] == [v1, v2]

    back = store.rollback("fraud", "prod")
    assert (back.previous, back.version) == (v3, v2)
    assert store.resolve("fraud@prod").version == v2
    assert store.rollback("fraud", "prod").version == v1
    with pytest.raises(NoPreviousVersionError, match="fraud@prod"):
        store.rollback("fraud", "prod")
    assert store.resolve("fraud@prod").version == v1


def test_promote_to_current_version_changes_nothing(store: ModelStore, root: Path) -> None:
    v1 = store.publish("fraud", FILES, make_draft(), aliases=["prod"]).version
    before = alias_file(root, "fraud", "prod")

    change = store.promote("fraud", "prod", v1)

    assert not change.changed
    assert alias_file(root, "fraud", "prod") == before


def test_promote_requires_existing_version(store: ModelStore) -> None:
    store.publish("fraud", FILES, make_draft())

    with pytest.raises(VersionNotFoundError):
        store.promote("fraud", "prod", "20000101T000000.000000Z-00000000")
    with pytest.raises(ModelNotFoundError):
        store.promote("churn", "prod", "20000101T000000.000000Z-00000000")
    with pytest.raises(AliasNotFoundError):
        store.rollback("fraud", "prod")


def test_rollback_skips_deleted_versions(store: ModelStore) -> None:
    v1 = store.publish("fraud", FILES, make_draft(), aliases=["prod"]).version
    v2 = store.publish("fraud", {"m.npz": b"2"}, make_draft(), aliases=["prod"]).version
    store.publish("fraud", {"m.npz": b"3"}, make_draft(), aliases=["prod"])
    store.promote("fraud", "canary", v1)
    store.delete_version("fraud", v2)

    assert store.rollback("fraud", "prod").version == v1


def test_corrupt_alias_file_is_reported(store: ModelStore, root: Path) -> None:
    store.publish("fraud", FILES, make_draft(), aliases=["prod"])
    (root / "fraud" / "aliases" / "prod.json").write_text('{"version": ')

    with pytest.raises(CorruptAliasError, match=r"prod\.json"):
        store.resolve("fraud@prod")


# -- deletion -----------------------------------------------------------------------------------


def test_delete_refuses_aliased_version(store: ModelStore) -> None:
    v1 = store.publish("fraud", FILES, make_draft(), aliases=["prod", "canary"]).version

    with pytest.raises(AliasInUseError, match=r"\['canary', 'prod'\]"):
        store.delete_version("fraud", v1)

    assert store.load("fraud@prod").files == FILES


def test_delete_removes_unaliased_version(store: ModelStore, root: Path) -> None:
    v1 = store.publish("fraud", FILES, make_draft()).version
    v2 = store.publish("fraud", {"m.npz": b"2"}, make_draft(), aliases=["prod"]).version

    store.delete_version("fraud", v1)

    assert [m.version for m in store.list_versions("fraud")] == [v2]
    assert not version_dir(root, "fraud", v1).exists()
    with pytest.raises(VersionNotFoundError):
        store.delete_version("fraud", v1)


# -- locking and concurrency --------------------------------------------------------------------


def test_held_lock_times_out(root: Path) -> None:
    store = ModelStore(str(root), lock_timeout_s=0.05)
    v1 = store.publish("fraud", FILES, make_draft()).version
    lock = root / "fraud" / ".lock"
    lock.write_text(json.dumps({"owner": "someone", "created": time.time()}))

    with pytest.raises(ConcurrentUpdateError, match="lock"):
        store.promote("fraud", "prod", v1)
    assert lock.exists()


def test_abandoned_lock_is_broken(root: Path) -> None:
    store = ModelStore(str(root), lock_timeout_s=1.0, stale_lock_after_s=30.0)
    v1 = store.publish("fraud", FILES, make_draft()).version
    lock = root / "fraud" / ".lock"
    lock.write_text(json.dumps({"owner": "crashed", "created": time.time() - 60}))

    assert store.promote("fraud", "prod", v1).version == v1
    assert not lock.exists()


def test_concurrent_publishers_never_corrupt_the_alias(store: ModelStore, root: Path) -> None:
    alias_path = root / "fraud" / "aliases" / "prod.json"
    published: list[str] = []
    problems: list[str] = []
    stop = threading.Event()

    def publisher(worker: int) -> None:
        for round_ in range(3):
            draft = make_draft(extra={"worker": worker, "round": round_})
            files = {"m.npz": f"{worker}-{round_}".encode()}
            manifest = store.publish("fraud", files, draft, aliases=["prod"])
            published.append(manifest.version)
            store.promote("fraud", "prod", manifest.version)

    def watcher() -> None:
        while not stop.is_set():
            try:
                record = json.loads(alias_path.read_text())
            except FileNotFoundError:
                continue
            except ValueError as exc:
                problems.append(f"invalid JSON: {exc}")
                continue
            if not (version_dir(root, "fraud", record["version"]) / "manifest.json").exists():
                problems.append(f"alias names missing version {record['version']}")

    threads = [threading.Thread(target=publisher, args=(i,)) for i in range(8)]
    observer = threading.Thread(target=watcher)
    observer.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    observer.join()

    assert problems == []
    assert len(published) == len(set(published)) == 24
    assert sorted(m.version for m in store.list_versions("fraud")) == sorted(published)
    record = alias_file(root, "fraud", "prod")
    assert record["version"] in published
    # every promotion was recorded: no read-modify-write update was lost
    history = record["history"]
    assert isinstance(history, list)
    assert set(history) | {record["version"]} == set(published)
    assert not (root / "fraud" / ".lock").exists()


# -- other filesystems --------------------------------------------------------------------------


@pytest.fixture
def memory_root() -> Iterator[str]:
    root = f"memory://model-store-test-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


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
