"""ModelStore's per-model lock: a held lock times out, an abandoned one is broken, concurrent publishers."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from model_store import ConcurrentUpdateError, ModelStore
from tests.model_store.helpers import FILES, alias_file, make_draft, version_dir


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
