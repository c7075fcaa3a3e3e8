"""Where things live below the store root, and read-only lookups of what exists.

Layout below the root (a local directory or any fsspec URL)::

    <name>/versions/<version>/manifest.json   written last: a version exists iff this does
    <name>/versions/<version>/<file>           the model's files, sha256 in the manifest
    <name>/aliases/<alias>.json                {"version", "history", "updated"}
    <name>/.staging/<token>/                   publishes in progress (never listed)
    <name>/.lock                               held while aliases change or versions go
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from model_store._fs import StoreFS
from model_store.aliases import alias_names, read_alias
from model_store.errors import InvalidManifestError, ModelNotFoundError, VersionNotFoundError
from model_store.manifest import Manifest
from model_store.names import MANIFEST_FILENAME, check_name, is_valid_name, new_token

_SHOWN_VERSIONS = 5


@dataclass(frozen=True)
class Catalog:
    """Paths of the store layout plus lookups that raise errors naming what exists."""

    storage: StoreFS
    label: str

    def version_dir(self, name: str, version: str) -> str:
        return self.storage.join(name, "versions", version)

    def manifest_path(self, name: str, version: str) -> str:
        return f"{self.version_dir(name, version)}/{MANIFEST_FILENAME}"

    def new_staging_dir(self, name: str, prefix: str = "") -> str:
        return self.storage.join(name, ".staging", prefix + new_token())

    def lock_path(self, name: str) -> str:
        return self.storage.join(name, ".lock")

    def has_version(self, name: str, version: str) -> bool:
        return self.storage.exists(self.manifest_path(name, version))

    def version_ids(self, name: str) -> list[str]:
        """Ids of the complete versions of ``name`` (staging and partial dirs ignored)."""
        candidates = self.storage.list_dirs(self.storage.join(name, "versions"))
        return [v for v in candidates if is_valid_name(v) and self.has_version(name, v)]

    def model_names(self) -> list[str]:
        """Names of the models that have at least one complete version, sorted."""
        names = self.storage.list_dirs(self.storage.root)
        return [name for name in names if is_valid_name(name) and self.version_ids(name)]

    def require_model(self, name: str) -> list[str]:
        """The version ids of ``name``; ModelNotFoundError naming the known models if none."""
        check_name("model", name)
        ids = self.version_ids(name)
        if not ids:
            raise ModelNotFoundError(f"model {name!r} not found in {self.label}; models: {self.model_names()}")
        return ids

    def require_version(self, name: str, version: str, *, via: str = "") -> None:
        """Raise ModelNotFoundError or VersionNotFoundError unless ``name:version`` exists."""
        if not self.has_version(name, version):
            self._missing_version(name, version, via)

    def manifest(self, name: str, version: str, *, via: str = "") -> Manifest:
        """The manifest of ``name:version``, checked to describe that very version."""
        path = self.manifest_path(name, version)
        try:
            data = self.storage.read_bytes(path)
        except FileNotFoundError:
            self._missing_version(name, version, via)
        manifest = Manifest.from_json(data)
        if (manifest.name, manifest.version) != (name, version):
            raise InvalidManifestError(f"{path} describes {manifest.name}:{manifest.version}, not {name}:{version}")
        return manifest

    def alias_targets(self, name: str) -> dict[str, str]:
        """Each alias of ``name`` mapped to the version it points at."""
        targets: dict[str, str] = {}
        for alias in alias_names(self.storage, name):
            record = read_alias(self.storage, name, alias)
            if record is not None:
                targets[alias] = record.version
        return targets

    def _missing_version(self, name: str, version: str, via: str) -> NoReturn:
        ids = self.require_model(name)
        prefix = f"{via}: " if via else ""
        raise VersionNotFoundError(
            f"{prefix}model {name!r} has no version {version!r}; newest versions: {ids[-_SHOWN_VERSIONS:]}"
        )
