"""ModelStore: versioned, checksummed model artifacts with movable aliases."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime

from model_store._catalog import Catalog
from model_store._fs import StoreFS
from model_store._lock import LockPolicy, held_lock
from model_store.aliases import AliasChange, AliasRecord, read_alias, write_alias
from model_store.errors import (
    AliasInUseError,
    AliasNotFoundError,
    ChecksumMismatchError,
    ConcurrentUpdateError,
    InvalidArtifactError,
    MissingArtifactError,
    NoPreviousVersionError,
)
from model_store.manifest import Manifest, ManifestDraft
from model_store.names import (
    MANIFEST_FILENAME,
    check_filename,
    check_name,
    iso_utc,
    new_version,
    sha256_hex,
    utc_now,
)
from model_store.refs import ModelRef, as_model_ref


@dataclass(frozen=True)
class LoadedModel:
    """A model version's manifest plus the verified content of each of its files."""

    manifest: Manifest
    files: dict[str, bytes] = field(hash=False)


class ModelStore:
    """Publish, resolve, load and alias model versions below ``root``.

    ``root`` is a local directory or any fsspec URL. The constructor does no I/O;
    the filesystem is built on first use. Publishing needs no lock (version ids are
    unique); alias changes and deletions take a per-model lock file.
    """

    def __init__(
        self,
        root: str,
        *,
        lock_timeout_s: float = 10.0,
        stale_lock_after_s: float = 60.0,
        max_alias_history: int = 100,
    ) -> None:
        self._root = root
        self._lock_policy = LockPolicy(timeout_s=lock_timeout_s, stale_after_s=stale_lock_after_s)
        self._max_alias_history = max_alias_history
        self._catalog_cache: Catalog | None = None

    @property
    def root(self) -> str:
        return self._root

    def __repr__(self) -> str:
        return f"ModelStore({self._root!r})"

    def publish(
        self,
        name: str,
        files: Mapping[str, bytes],
        manifest: ManifestDraft,
        aliases: Sequence[str] = (),
    ) -> Manifest:
        """Store ``files`` as a new version of ``name``, then point each alias at it.

        Files and then the manifest go to a staging directory that is moved into
        place in one step, so a crash never leaves a visible half version. Aliases
        move only once the version is complete; if that fails (e.g.
        ConcurrentUpdateError) the version stays published and the error propagates.
        """
        check_name("model", name)
        alias_list = [check_name("alias", alias) for alias in _as_list(aliases)]
        contents = _checked_contents(files)
        now = utc_now()
        result = Manifest.from_draft(
            manifest,
            name=name,
            version=new_version(now),
            created=iso_utc(now),
            files={filename: sha256_hex(data) for filename, data in contents.items()},
        )
        self._write_version(result, contents)
        for alias in alias_list:
            self.promote(name, alias, result.version)
        return result

    def resolve(self, ref: str | ModelRef) -> Manifest:
        """The manifest ``ref`` designates (an alias is followed to its current version)."""
        model_ref = as_model_ref(ref)
        catalog = self._catalog()
        version = model_ref.version
        if model_ref.alias is not None:
            record = read_alias(catalog.storage, model_ref.name, model_ref.alias)
            if record is None:
                catalog.require_model(model_ref.name)
                raise AliasNotFoundError(
                    f"model {model_ref.name!r} has no alias {model_ref.alias!r}; "
                    f"its aliases: {catalog.alias_targets(model_ref.name)}"
                )
            version = record.version
        assert version is not None
        return catalog.manifest(model_ref.name, version, via=str(model_ref))

    def load(self, ref: str | ModelRef) -> LoadedModel:
        """The manifest and files of ``ref``, every file verified against its sha256."""
        manifest = self.resolve(ref)
        catalog = self._catalog()
        directory = catalog.version_dir(manifest.name, manifest.version)
        files = {
            filename: _verified(catalog.storage, manifest, f"{directory}/{filename}", filename)
            for filename in manifest.files
        }
        return LoadedModel(manifest=manifest, files=files)

    def list_models(self) -> list[str]:
        """Names of the models that have at least one complete version, sorted."""
        return self._catalog().model_names()

    def list_versions(self, name: str) -> list[Manifest]:
        """Manifests of every complete version of ``name``, oldest first."""
        catalog = self._catalog()
        ids = catalog.require_model(name)
        manifests = [catalog.manifest(name, version) for version in ids]
        return sorted(manifests, key=lambda m: (datetime.fromisoformat(m.created), m.version))

    def aliases(self, name: str) -> dict[str, str]:
        """Each alias of ``name`` mapped to the version it points at."""
        catalog = self._catalog()
        catalog.require_model(name)
        return catalog.alias_targets(name)

    def promote(self, name: str, alias: str, version: str) -> AliasChange:
        """Point ``name@alias`` at ``version`` (which must exist), recording the previous one."""
        check_name("model", name)
        check_name("alias", alias)
        check_name("version", version)
        catalog = self._catalog()
        with self._locked(name):
            catalog.require_version(name, version)
            record = read_alias(catalog.storage, name, alias)
            if record is not None and record.version == version:
                return AliasChange(name, alias, version, version, record.updated)
            updated = iso_utc(utc_now())
            if record is None:
                new_record = AliasRecord(version=version, history=(), updated=updated)
            else:
                new_record = record.moved_to(version, updated, self._max_alias_history)
            write_alias(catalog.storage, name, alias, new_record)
        previous = record.version if record is not None else None
        return AliasChange(name, alias, previous, version, updated)

    def rollback(self, name: str, alias: str) -> AliasChange:
        """Point ``name@alias`` back at the newest still-existing version of its history."""
        check_name("model", name)
        check_name("alias", alias)
        catalog = self._catalog()
        with self._locked(name):
            record = read_alias(catalog.storage, name, alias)
            if record is None:
                catalog.require_model(name)
                raise AliasNotFoundError(f"model {name!r} has no alias {alias!r} to roll back")
            history = list(record.history)
            while history and not catalog.has_version(name, history[-1]):
                history.pop()  # skip versions deleted since
            if not history:
                raise NoPreviousVersionError(f"{name}@{alias} points at {record.version} and has no earlier version")
            target = history.pop()
            updated = iso_utc(utc_now())
            write_alias(catalog.storage, name, alias, AliasRecord(target, tuple(history), updated))
        return AliasChange(name, alias, record.version, target, updated)

    def delete_version(self, name: str, version: str) -> None:
        """Delete ``name:version``; AliasInUseError while any alias points at it."""
        check_name("model", name)
        check_name("version", version)
        catalog = self._catalog()
        with self._locked(name):
            catalog.require_version(name, version)
            targets = catalog.alias_targets(name)
            users = sorted(alias for alias, target in targets.items() if target == version)
            if users:
                raise AliasInUseError(
                    f"cannot delete {name}:{version}: aliases {users} point at it; promote them elsewhere first"
                )
            self._remove_version(name, version)

    def _write_version(self, manifest: Manifest, contents: Mapping[str, bytes]) -> None:
        catalog = self._catalog()
        storage = catalog.storage
        staging = catalog.new_staging_dir(manifest.name)
        target = catalog.version_dir(manifest.name, manifest.version)
        try:
            for filename, data in contents.items():
                storage.write_bytes(f"{staging}/{filename}", data)
            storage.write_bytes(f"{staging}/{MANIFEST_FILENAME}", manifest.to_json().encode())
            if storage.exists(target):
                raise ConcurrentUpdateError(f"version {manifest.name}:{manifest.version} exists")
            storage.move_dir(staging, target, last=MANIFEST_FILENAME)
        finally:
            storage.remove_tree(staging)

    def _remove_version(self, name: str, version: str) -> None:
        catalog = self._catalog()
        storage = catalog.storage
        directory = catalog.version_dir(name, version)
        if storage.is_local:  # vanish in one rename, then clean up out of sight
            trash = catalog.new_staging_dir(name, prefix="deleted-")
            storage.move_dir(directory, trash, last=MANIFEST_FILENAME)
            storage.remove_tree(trash)
        else:
            storage.remove_file(catalog.manifest_path(name, version))
            storage.remove_tree(directory)

    def _catalog(self) -> Catalog:
        if self._catalog_cache is None:
            self._catalog_cache = Catalog(StoreFS.from_url(self._root), label=self._root)
        return self._catalog_cache

    def _locked(self, name: str) -> AbstractContextManager[None]:
        catalog = self._catalog()
        return held_lock(catalog.storage, catalog.lock_path(name), self._lock_policy)


def _verified(storage: StoreFS, manifest: Manifest, path: str, filename: str) -> bytes:
    """The content of ``path``, refused unless it matches the manifest's sha256."""
    where = f"file {filename!r} of {manifest.name}:{manifest.version}"
    try:
        data = storage.read_bytes(path)
    except FileNotFoundError:
        raise MissingArtifactError(f"{where} is listed in its manifest but missing from the store") from None
    actual = sha256_hex(data)
    if actual != manifest.files[filename]:
        raise ChecksumMismatchError(f"{where} has sha256 {actual}, but its manifest records {manifest.files[filename]}")
    return data


def _as_list(aliases: Sequence[str]) -> list[str]:
    return [aliases] if isinstance(aliases, str) else list(aliases)


def _checked_contents(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """A private copy of ``files`` after checking names and types."""
    if not files:
        raise InvalidArtifactError("a model version needs at least one file")
    contents: dict[str, bytes] = {}
    for filename, data in files.items():
        check_filename(filename)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidArtifactError(f"file {filename!r} must be bytes, got {type(data).__name__}")
        contents[filename] = bytes(data)
    return contents
