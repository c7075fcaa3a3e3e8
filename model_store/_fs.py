"""Thin filesystem layer over fsspec with atomic operations where the backend allows.

Local filesystems get real atomicity (``os.rename``/``os.replace``/``os.link``);
other fsspec backends get the closest best-effort equivalent.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from contextlib import suppress
from dataclasses import dataclass

from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from model_store.names import new_token


@dataclass(frozen=True)
class StoreFS:
    """A filesystem plus the root path inside it under which the store lives."""

    fs: AbstractFileSystem
    root: str
    is_local: bool

    @classmethod
    def from_url(cls, url: str) -> StoreFS:
        """Build the filesystem for a local path or any fsspec URL."""
        fs, path = url_to_fs(url)
        return cls(fs=fs, root=path.rstrip("/"), is_local=isinstance(fs, LocalFileSystem))

    def join(self, *parts: str) -> str:
        """The path of ``parts`` below the root."""
        return "/".join((self.root, *parts))

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(path))

    def list_dirs(self, path: str) -> list[str]:
        """Names of the sub-directories of ``path``; empty if ``path`` does not exist."""
        return self._list(path, "directory")

    def list_files(self, path: str) -> list[str]:
        """Names of the files directly in ``path``; empty if ``path`` does not exist."""
        return self._list(path, "file")

    def read_bytes(self, path: str) -> bytes:
        """The content of ``path``; FileNotFoundError if it does not exist."""
        if self.is_local:
            with open(path, "rb") as handle:
                return handle.read()
        return bytes(self.fs.cat_file(path))

    def write_bytes(self, path: str, data: bytes) -> None:
        """Create or overwrite ``path`` (not atomic; used inside staging directories)."""
        if self.is_local:
            os.makedirs(posixpath.dirname(path), exist_ok=True)
            _write_synced(path, data)
        else:
            self.fs.pipe_file(path, data)

    def replace_bytes(self, path: str, data: bytes) -> None:
        """Atomically replace ``path``: readers see the old or the new content, never a mix."""
        if not self.is_local:
            self.fs.pipe_file(path, data)  # object stores replace whole objects
            return
        directory, base = posixpath.split(path)
        os.makedirs(directory, exist_ok=True)
        temp = posixpath.join(directory, f".{base}.{new_token()}.tmp")
        try:
            _write_synced(temp, data)
            os.replace(temp, path)
        finally:
            with suppress(FileNotFoundError):
                os.remove(temp)

    def create_exclusive(self, path: str, data: bytes) -> bool:
        """Create ``path`` holding ``data`` unless it exists; whether this call created it."""
        if self.is_local:
            return _link_exclusive(path, data)
        try:
            with self.fs.open(path, "xb") as handle:
                handle.write(data)
        except FileExistsError:
            return False
        except (ValueError, NotImplementedError):  # backend without exclusive create
            if self.exists(path):
                return False
            self.fs.pipe_file(path, data)
        return True

    def remove_file(self, path: str) -> None:
        """Delete ``path``; no error if it is already gone."""
        with suppress(FileNotFoundError):
            if self.is_local:
                os.remove(path)
            else:
                self.fs.rm_file(path)

    def move_dir(self, source: str, target: str, *, last: str) -> None:
        """Move directory ``source`` to ``target`` (which must not exist).

        Local: one atomic rename. Elsewhere: file by file, moving ``last`` (the
        file whose presence marks the directory complete) after all the others.
        """
        if self.is_local:
            os.makedirs(posixpath.dirname(target), exist_ok=True)
            os.rename(source, target)
            return
        names = sorted(self.list_files(source), key=lambda name: name == last)
        for name in names:
            self.fs.mv(posixpath.join(source, name), posixpath.join(target, name))
        self.remove_tree(source)

    def remove_tree(self, path: str) -> None:
        """Delete ``path`` and everything below it; no error if it is already gone."""
        if self.is_local:
            shutil.rmtree(path, ignore_errors=True)
            return
        with suppress(FileNotFoundError):
            self.fs.rm(path, recursive=True)

    def _list(self, path: str, kind: str) -> list[str]:
        try:
            entries = self.fs.ls(path, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        wanted = path.rstrip("/")
        names = []
        for entry in entries:
            entry_path = str(entry["name"]).rstrip("/")
            if entry_path != wanted and entry.get("type") == kind:
                names.append(posixpath.basename(entry_path))
        return sorted(names)


def _write_synced(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _link_exclusive(path: str, data: bytes) -> bool:
    """Create ``path`` with its full content in one step (write a temp file, hard-link it)."""
    directory, base = posixpath.split(path)
    os.makedirs(directory, exist_ok=True)
    temp = posixpath.join(directory, f".{base}.{new_token()}.tmp")
    try:
        _write_synced(temp, data)
        os.link(temp, path)
    except FileExistsError:
        return False
    finally:
        with suppress(FileNotFoundError):
            os.remove(temp)
    return True
