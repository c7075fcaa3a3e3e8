"""A lock guarding read-modify-write updates of one model's aliases.

The lock is the file ``path`` (``<root>/<name>/.lock``): it exists while a writer holds the
lock and records its owner (a random token) and creation time, so that a lock left behind
by a crashed writer is broken once it is older than ``stale_after_s`` seconds. How the file
is created, broken and removed safely depends on the root:

Local roots
    Every writer first takes an operating-system lock (``filelock.FileLock``, i.e. ``flock``)
    on ``<path>.guard`` and keeps it until it is done. The kernel makes that lock exclusive and
    drops it when its holder dies, so it never goes stale. The ``.lock`` file is still created,
    honoured and removed (so that writers which know only the lock file still see it), but
    only by the guard holder: breaking a stale one (read, compare, remove) cannot race with
    another writer doing the same. filelock leaves the guard file in place on release:
    unlinking a file others may be blocked on would let two writers lock two inodes.

Other fsspec roots
    There is no operating-system lock, so the protocol uses only the filesystem's atomic
    create-if-absent (``open(path, "xb")``). See ``_remove_if_unchanged`` for why breaking a
    stale lock there never removes a lock some other writer has taken since.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from filelock import FileLock, Timeout

from model_store._fs import StoreFS
from model_store.errors import ConcurrentUpdateError
from model_store.names import new_token

GUARD_SUFFIX = ".guard"

_FIRST_DELAY_S = 0.002
_MAX_DELAY_S = 0.05
_GUARD_POLL_S = 0.005
# A lock file whose content cannot be parsed may be one whose creator is still writing it
# (exclusive create and write are two steps on some backends): only once the same unreadable
# content has been seen for this long (or ``stale_after_s``, if shorter) is it abandoned.
_UNREADABLE_GRACE_S = 0.5
# How many crashed breakers in a row (see ``_remove_if_unchanged``) are cleaned up at once.
_MAX_CLAIM_DEPTH = 3


@dataclass(frozen=True)
class LockPolicy:
    """How long to wait for a lock, and when a held lock counts as abandoned."""

    timeout_s: float = 10.0
    stale_after_s: float = 60.0


@contextmanager
def held_lock(storage: StoreFS, path: str, policy: LockPolicy) -> Iterator[None]:
    """Hold the lock file ``path`` for the duration of the ``with`` block.

    Raises ConcurrentUpdateError when the lock is not free (or abandoned) within
    ``policy.timeout_s`` seconds.
    """
    deadline = time.monotonic() + policy.timeout_s
    staleness = _Staleness(policy.stale_after_s)
    if storage.is_local:
        with _guard(path, policy, deadline):
            mine = _acquire(storage, path, policy, deadline, staleness, _guarded_remover(storage, path))
            try:
                yield
            finally:
                if _read(storage, path) == mine:
                    storage.remove_file(path)
    else:
        remover = _claiming_remover(storage, path, staleness)
        mine = _acquire(storage, path, policy, deadline, staleness, remover)
        try:
            yield
        finally:
            # If this lock was broken (held past ``stale_after_s``) this removes nothing.
            _remove_if_unchanged(storage, path, mine, staleness)


@contextmanager
def _guard(path: str, policy: LockPolicy, deadline: float) -> Iterator[None]:
    """Hold the operating-system lock on ``<path>.guard`` (local roots only)."""
    guard_path = path + GUARD_SUFFIX
    os.makedirs(os.path.dirname(guard_path) or ".", exist_ok=True)
    guard = FileLock(guard_path, thread_local=False)
    try:
        guard.acquire(timeout=max(0.0, deadline - time.monotonic()), poll_interval=_GUARD_POLL_S)
    except Timeout:
        raise _timeout_error(path, policy) from None
    try:
        yield
    finally:
        guard.release()


def _acquire(
    storage: StoreFS,
    path: str,
    policy: LockPolicy,
    deadline: float,
    staleness: _Staleness,
    remove_stale: Callable[[bytes], bool],
) -> bytes:
    """Create the lock file; the exact bytes written, which identify this holder's lock."""
    owner = new_token()
    delay = _FIRST_DELAY_S
    while True:
        mine = _encode(owner, time.time())
        if storage.create_exclusive(path, mine):
            return mine
        current = _read(storage, path)
        if current is not None and staleness.abandoned(path, current) and remove_stale(current):
            continue  # the abandoned lock is gone: try again at once
        if time.monotonic() >= deadline:
            raise _timeout_error(path, policy)
        time.sleep(delay * random.uniform(0.5, 1.5))
        delay = min(delay * 2, _MAX_DELAY_S)


def _guarded_remover(storage: StoreFS, path: str) -> Callable[[bytes], bool]:
    """Break a stale local lock: safe as is, since only the guard holder touches the lock file."""

    def remove(expected: bytes) -> bool:
        if _read(storage, path) != expected:
            return False
        storage.remove_file(path)
        return True

    return remove


def _claiming_remover(storage: StoreFS, path: str, staleness: _Staleness) -> Callable[[bytes], bool]:
    def remove(expected: bytes) -> bool:
        return _remove_if_unchanged(storage, path, expected, staleness)

    return remove


def _remove_if_unchanged(storage: StoreFS, path: str, expected: bytes, staleness: _Staleness, depth: int = 0) -> bool:
    """Delete ``path`` if it still holds ``expected``; whether this call deleted it.

    Used both to release one's own lock and to break an abandoned one, on backends that
    offer only an atomic create-if-absent (no compare-and-delete). Why it is safe:

    * Every lock file's content is unique (a random owner token plus its creation time), so
      ``expected`` names one *instance* of the lock file, and the instance never comes back
      once deleted.
    * Whoever wants to delete an instance (its owner releasing it, or a waiter breaking it)
      must first create the claim file ``<path>.<digest of expected>`` exclusively. The
      create is atomic, so of all the parties racing to delete one instance exactly one wins;
      the others give up (and retry from scratch, re-reading the lock file).
    * The winner re-reads ``path`` *after* winning. If it no longer holds ``expected``, the
      instance is already gone (deleted by an earlier winner who has since removed its
      claim) and the winner deletes nothing. If it still holds ``expected``, it cannot change
      before the winner's delete: changing it means deleting this instance first, which only
      the claim holder may do. So the delete removes exactly ``expected``, never a lock
      another writer has created since (a plain read, re-read, remove could: two waiters
      both see the stale lock, one removes it and takes the lock, the other then removes that).
    * The claim is removed afterwards. A late party who read ``expected`` long ago may then
      win a fresh claim for it, but its re-read shows the instance gone, so it deletes nothing.

    A breaker that crashes while holding a claim would block its instance forever, so a
    claim older than ``stale_after_s`` is itself broken, by this same procedure one level
    down (``<claim>.<digest>``). Like any lease, this assumes that no party stalls for longer
    than ``stale_after_s`` between winning a claim and deleting, nor holds the lock longer,
    that clocks agree to well within ``stale_after_s``, and that the backend's reads are
    consistent and its exclusive create atomic (an ``O_EXCL`` open or a conditional put).
    Where it is not -- the memory filesystem checks then stores, which threads of one process
    can interleave, and ``StoreFS.create_exclusive`` falls back to check-then-write on
    backends without exclusive create -- the lock is only best-effort.
    """
    claim = claim_path(path, expected)
    if not storage.create_exclusive(claim, _encode(new_token(), time.time())):
        other = _read(storage, claim)
        if other is not None and depth < _MAX_CLAIM_DEPTH and staleness.abandoned(claim, other):
            _remove_if_unchanged(storage, claim, other, staleness, depth + 1)  # its owner crashed
        return False
    try:
        if _read(storage, path) != expected:
            return False
        storage.remove_file(path)
        return True
    finally:
        storage.remove_file(claim)


def claim_path(path: str, content: bytes) -> str:
    """The claim whose exclusive creation entitles its creator to delete ``path`` holding ``content``."""
    return f"{path}.{hashlib.sha256(content).hexdigest()[:16]}"


@dataclass
class _Staleness:
    """Decides whether a lock (or claim) file's content marks it abandoned."""

    stale_after_s: float
    _first_seen: dict[tuple[str, bytes], float] = field(default_factory=dict)

    def abandoned(self, path: str, content: bytes) -> bool:
        created = _created(content)
        if created is not None:
            return time.time() - created >= self.stale_after_s
        now = time.monotonic()
        first_seen = self._first_seen.setdefault((path, content), now)
        return now - first_seen >= min(self.stale_after_s, _UNREADABLE_GRACE_S)


def _timeout_error(path: str, policy: LockPolicy) -> ConcurrentUpdateError:
    return ConcurrentUpdateError(
        f"could not lock {path} within {policy.timeout_s:g}s: another writer holds it "
        f"(it is considered abandoned after {policy.stale_after_s:g}s)"
    )


def _read(storage: StoreFS, path: str) -> bytes | None:
    """The raw content of ``path``, or None if it does not exist."""
    try:
        return storage.read_bytes(path)
    except FileNotFoundError:
        return None


def _created(content: bytes) -> float | None:
    """The creation time recorded in a lock file's content; None if it is unreadable."""
    try:
        data = json.loads(content)
        if not isinstance(data, dict) or "owner" not in data:
            return None
        created = float(data["created"])
    except (ValueError, KeyError, TypeError):
        return None
    return created if math.isfinite(created) else None


def _encode(owner: str, created: float) -> bytes:
    return json.dumps({"owner": owner, "created": created}).encode()
