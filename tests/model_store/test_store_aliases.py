"""ModelStore's names for versions: refs and their resolution, aliases (promote, rollback), deletion."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_store import (
    AliasInUseError,
    AliasNotFoundError,
    CorruptAliasError,
    InvalidModelRefError,
    ModelNotFoundError,
    ModelRef,
    ModelStore,
    ModelStoreError,
    NoPreviousVersionError,
    VersionNotFoundError,
    parse_model_ref,
)
from stream.errors import KnnStreamError
from tests.model_store.helpers import FILES, alias_file, make_draft, version_dir

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
