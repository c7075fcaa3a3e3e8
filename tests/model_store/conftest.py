"""Fixtures of the model store tests: a store on a fresh local root, and a memory:// root."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from model_store import ModelStore


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(root: Path) -> ModelStore:
    return ModelStore(str(root))


@pytest.fixture
def memory_root() -> Iterator[str]:
    root = f"memory://model-store-test-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)
