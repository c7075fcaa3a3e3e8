"""The per-model lock: exclusive even while several processes race to break an abandoned lock."""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.synchronize
import os
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem

from model_store import ConcurrentUpdateError, ManifestDraft, ModelStore
from model_store._fs import StoreFS
from model_store._lock import LockPolicy, _remove_if_unchanged, _Staleness, claim_path, held_lock

WORKERS = 4
ROUNDS = 5
HOLD_S = 0.01


def lock_content(owner: str, age_s: float) -> bytes:
    return json.dumps({"owner": owner, "created": time.time() - age_s}).encode()


def plant(path: str, data: bytes) -> None:
    """Put ``data`` at ``path`` in one step, as a writer that crashed long ago would have left it."""
    temp = f"{path}.{uuid.uuid4().hex}.tmp"
    with open(temp, "wb") as handle:
        handle.write(data)
    os.replace(temp, path)


def append_line(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@dataclass(frozen=True)
class SlowStoreFS(StoreFS):
    """A store filesystem whose reads and deletes take a little while, as on a network filesystem.

    The delay widens the gap between checking a lock and deleting it, where a lock that is not
    safe to break lets two waiters in.
    """

    def read_bytes(self, path: str) -> bytes:
        time.sleep(random.uniform(0, 0.003))
        return super().read_bytes(path)

    def remove_file(self, path: str) -> None:
        time.sleep(random.uniform(0.002, 0.01))
        super().remove_file(path)


def contend(root: str, via_fsspec: bool, worker: int, start: multiprocessing.synchronize.Barrier, log: str) -> None:
    """One process: take the lock ROUNDS times, logging entry and exit, and leave it abandoned each time."""
    if via_fsspec:  # the code path of non-local roots, over a local directory (its "xb" is a true O_EXCL)
        storage: StoreFS = SlowStoreFS(fs=LocalFileSystem(), root=root, is_local=False)
    else:
        storage = SlowStoreFS.from_url(root)
    lock = storage.join("fraud", ".lock")
    policy = LockPolicy(timeout_s=30.0, stale_after_s=30.0)
    start.wait(30)
    for round_ in range(ROUNDS):
        with held_lock(storage, lock, policy):
            append_line(log, f"enter {worker}.{round_}")
            time.sleep(HOLD_S)
            append_line(log, f"exit {worker}.{round_}")
            # Replace our lock by one abandoned long ago (a release leaves another owner's lock
            # alone), so that every round has all the waiting workers racing to break it.
            plant(lock, lock_content(f"crashed-{worker}-{round_}", age_s=3600))


@pytest.mark.parametrize("via_fsspec", [False, True], ids=["local-filelock", "fsspec-exclusive-create"])
def test_processes_racing_for_a_stale_lock_never_hold_it_together(tmp_path: Path, via_fsspec: bool) -> None:
    root = tmp_path / "store"
    (root / "fraud").mkdir(parents=True)
    plant(str(root / "fraud" / ".lock"), lock_content("crashed", age_s=3600))
    log = str(tmp_path / "holders.log")
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WORKERS)
    processes = [
        context.Process(target=contend, args=(str(root), via_fsspec, worker, start, log)) for worker in range(WORKERS)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    assert [process.exitcode for process in processes] == [0] * WORKERS

    lines = Path(log).read_text().splitlines()
    assert len(lines) == 2 * WORKERS * ROUNDS
    for index in range(0, len(lines), 2):
        holder = lines[index].removeprefix("enter ")
        assert lines[index] == f"enter {holder}", f"overlap at line {index}: {lines}"
        assert lines[index + 1] == f"exit {holder}", f"{holder} was not alone holding the lock: {lines}"
    # only the last abandoned lock (plus, on local roots, the guard file filelock keeps) remains
    leftovers = {p.name for p in (root / "fraud").iterdir()} - {".lock.guard"}
    assert leftovers == {".lock"}


# -- non-local (fsspec) roots, on the memory filesystem ------------------------------------------


def lock_files(root: str) -> list[str]:
    fs = fsspec.filesystem("memory")
    return sorted(path.rsplit("/", 1)[-1] for path in fs.find(root) if "/.lock" in path)


def publish(store: ModelStore) -> str:
    draft = ManifestDraft(
        task="classification",
        k=3,
        metric="euclidean",
        feature_names=("a", "b"),
        n_features=2,
        training_rows=10,
        backend="numpy",
        format="npz",
        classes=("x", "y"),
    )
    return store.publish("fraud", {"m.npz": b"model"}, draft).version


def test_memory_root_breaks_an_abandoned_lock(memory_root: str) -> None:
    store = ModelStore(memory_root, lock_timeout_s=2.0, stale_lock_after_s=30.0)
    version = publish(store)
    fsspec.filesystem("memory").pipe_file(f"{memory_root}/fraud/.lock", lock_content("crashed", age_s=60))

    assert store.promote("fraud", "prod", version).version == version
    assert lock_files(memory_root) == []  # neither the lock nor any claim is left behind


def test_memory_root_waits_for_a_live_lock(memory_root: str) -> None:
    store = ModelStore(memory_root, lock_timeout_s=0.05, stale_lock_after_s=30.0)
    version = publish(store)
    fs = fsspec.filesystem("memory")
    fs.pipe_file(f"{memory_root}/fraud/.lock", lock_content("alive", age_s=1))

    with pytest.raises(ConcurrentUpdateError, match="lock"):
        store.promote("fraud", "prod", version)
    assert json.loads(fs.cat_file(f"{memory_root}/fraud/.lock"))["owner"] == "alive"
    assert lock_files(memory_root) == [".lock"]


def test_memory_root_lock_being_written_is_not_broken_at_once(memory_root: str) -> None:
    storage = StoreFS.from_url(memory_root)
    lock = storage.join("fraud", ".lock")
    storage.fs.pipe_file(lock, b"")  # created, content not written yet (or never: its writer crashed)

    with pytest.raises(ConcurrentUpdateError), held_lock(storage, lock, LockPolicy(timeout_s=0.05)):
        pass
    with held_lock(storage, lock, LockPolicy(timeout_s=3.0)):
        assert json.loads(storage.read_bytes(lock))["owner"]


def test_late_breaker_leaves_the_new_holders_lock_alone(memory_root: str) -> None:
    storage = StoreFS.from_url(memory_root)
    lock = storage.join("fraud", ".lock")
    stale = lock_content("crashed", age_s=3600)
    storage.fs.pipe_file(lock, stale)
    staleness = _Staleness(stale_after_s=30.0)

    assert _remove_if_unchanged(storage, lock, stale, staleness)  # the first breaker
    fresh = lock_content("new-holder", age_s=0)
    assert storage.create_exclusive(lock, fresh)  # the next holder
    assert not _remove_if_unchanged(storage, lock, stale, staleness)  # a breaker who read the stale lock earlier
    assert storage.read_bytes(lock) == fresh
    assert lock_files(memory_root) == [".lock"]


def test_only_the_claiming_breaker_removes_a_stale_lock(memory_root: str) -> None:
    storage = StoreFS.from_url(memory_root)
    lock = storage.join("fraud", ".lock")
    stale = lock_content("crashed", age_s=3600)
    storage.fs.pipe_file(lock, stale)
    storage.fs.pipe_file(claim_path(lock, stale), lock_content("other-breaker", age_s=0))

    assert not _remove_if_unchanged(storage, lock, stale, _Staleness(stale_after_s=30.0))
    assert storage.read_bytes(lock) == stale  # left to the breaker holding the claim


def test_claim_of_a_crashed_breaker_is_broken_too(memory_root: str) -> None:
    store = ModelStore(memory_root, lock_timeout_s=2.0, stale_lock_after_s=30.0)
    version = publish(store)
    storage = StoreFS.from_url(memory_root)
    lock = storage.join("fraud", ".lock")
    stale = lock_content("crashed", age_s=3600)
    storage.fs.pipe_file(lock, stale)
    storage.fs.pipe_file(claim_path(lock, stale), lock_content("crashed-breaker", age_s=3600))

    assert store.promote("fraud", "prod", version).version == version
    assert lock_files(memory_root) == []


def test_release_after_the_lock_was_broken_keeps_the_breakers_lock(memory_root: str) -> None:
    storage = StoreFS.from_url(memory_root)
    lock = storage.join("fraud", ".lock")
    breaker = lock_content("breaker", age_s=0)
    with held_lock(storage, lock, LockPolicy(timeout_s=1.0)):
        storage.fs.pipe_file(lock, breaker)  # held past stale_after_s: another writer took over
    assert storage.read_bytes(lock) == breaker
    assert lock_files(memory_root) == [".lock"]
