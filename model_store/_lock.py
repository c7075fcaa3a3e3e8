"""A lock file guarding read-modify-write updates of one model's aliases.

The lock is a file created exclusively (atomic on local filesystems, best-effort
elsewhere). It records its owner and creation time so that a lock left behind by
a crashed writer is broken once it is older than ``stale_after`` seconds.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from model_store._fs import StoreFS
from model_store.errors import ConcurrentUpdateError
from model_store.names import new_token

_FIRST_DELAY_S = 0.002
_MAX_DELAY_S = 0.05


@dataclass(frozen=True)
class LockPolicy:
    """How long to wait for a lock, and when a held lock counts as abandoned."""

    timeout_s: float = 10.0
    stale_after_s: float = 60.0


@dataclass(frozen=True)
class _LockInfo:
    owner: str
    created: float


@contextmanager
def held_lock(storage: StoreFS, path: str, policy: LockPolicy) -> Iterator[None]:
    """Hold the lock file ``path`` for the duration of the ``with`` block."""
    owner = new_token()
    _acquire(storage, path, owner, policy)
    try:
        yield
    finally:
        _release(storage, path, owner)


def _acquire(storage: StoreFS, path: str, owner: str, policy: LockPolicy) -> None:
    deadline = time.monotonic() + policy.timeout_s
    delay = _FIRST_DELAY_S
    while not storage.create_exclusive(path, _encode(_LockInfo(owner, time.time()))):
        _break_if_stale(storage, path, policy.stale_after_s)
        if time.monotonic() >= deadline:
            raise ConcurrentUpdateError(
                f"could not lock {path} within {policy.timeout_s:g}s: another writer holds it "
                f"(it is considered abandoned after {policy.stale_after_s:g}s)"
            )
        time.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(delay * 2, _MAX_DELAY_S)


def _release(storage: StoreFS, path: str, owner: str) -> None:
    info = _read(storage, path)
    if info is not None and info.owner == owner:
        storage.remove_file(path)


def _break_if_stale(storage: StoreFS, path: str, stale_after_s: float) -> None:
    info = _read(storage, path)
    if info is None or time.time() - info.created < stale_after_s:
        return
    if _read(storage, path) == info:  # still the same abandoned lock
        storage.remove_file(path)


def _read(storage: StoreFS, path: str) -> _LockInfo | None:
    try:
        data = json.loads(storage.read_bytes(path))
        return _LockInfo(owner=str(data["owner"]), created=float(data["created"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        # Unreadable (e.g. half-written by a non-atomic backend): treat as abandoned.
        return _LockInfo(owner="", created=0.0)


def _encode(info: _LockInfo) -> bytes:
    return json.dumps({"owner": info.owner, "created": info.created}).encode()
