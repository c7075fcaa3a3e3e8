"""Alias records (``<root>/<name>/aliases/<alias>.json``) and the changes made to them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from model_store._fs import StoreFS
from model_store.errors import CorruptAliasError
from model_store.names import is_iso_utc, is_valid_name

ALIAS_SUFFIX = ".json"


@dataclass(frozen=True)
class AliasRecord:
    """Where an alias points now, and where it pointed before (oldest first)."""

    version: str
    history: tuple[str, ...]
    updated: str

    def moved_to(self, version: str, updated: str, max_history: int) -> AliasRecord:
        """This alias pointed at ``version``, the current version joining the history."""
        history = (*self.history, self.version)[-max_history:] if max_history > 0 else ()
        return AliasRecord(version=version, history=history, updated=updated)

    def to_json(self) -> str:
        data = {"version": self.version, "history": list(self.history), "updated": self.updated}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, *, origin: str) -> AliasRecord:
        """Parse an alias file; CorruptAliasError (naming ``origin``) if it is malformed."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CorruptAliasError(f"alias file {origin} is not valid JSON: {exc}") from exc
        if not _is_record(data):
            raise CorruptAliasError(f"alias file {origin} must hold {{'version', 'history', 'updated'}}, got {data!r}")
        return cls(version=data["version"], history=tuple(data["history"]), updated=data["updated"])


@dataclass(frozen=True)
class AliasChange:
    """The outcome of moving an alias: from ``previous`` (None if new) to ``version``."""

    name: str
    alias: str
    previous: str | None
    version: str
    updated: str

    @property
    def changed(self) -> bool:
        """Whether the alias now points somewhere else than before."""
        return self.previous != self.version


def alias_path(storage: StoreFS, name: str, alias: str) -> str:
    return storage.join(name, "aliases", alias + ALIAS_SUFFIX)


def read_alias(storage: StoreFS, name: str, alias: str) -> AliasRecord | None:
    """The record of ``name@alias``, or None if there is no such alias."""
    path = alias_path(storage, name, alias)
    try:
        data = storage.read_bytes(path)
    except FileNotFoundError:
        return None
    return AliasRecord.from_json(data, origin=path)


def write_alias(storage: StoreFS, name: str, alias: str, record: AliasRecord) -> None:
    """Replace the record of ``name@alias`` in one atomic write."""
    storage.replace_bytes(alias_path(storage, name, alias), record.to_json().encode())


def alias_names(storage: StoreFS, name: str) -> list[str]:
    """The aliases defined for model ``name`` (temp and lock files ignored)."""
    names = []
    for filename in storage.list_files(storage.join(name, "aliases")):
        stem = filename[: -len(ALIAS_SUFFIX)]
        if filename.endswith(ALIAS_SUFFIX) and is_valid_name(stem):
            names.append(stem)
    return sorted(names)


def _is_record(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and set(data) == {"version", "history", "updated"}
        and is_valid_name(data["version"])
        and isinstance(data["history"], list)
        and all(is_valid_name(item) for item in data["history"])
        and is_iso_utc(data["updated"])
    )
