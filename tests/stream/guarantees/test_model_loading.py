"""Promise 10: a model file is never deserialised unless its checksum matches, and never runs code."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from model_store import ChecksumMismatchError, ModelStore
from stream.predict.model import MODEL_FILE, KnnIndex, ModelFormatError
from stream.predict.plugin import ModelPlugin
from tests.stream.guarantees.scenario import MODEL_NAME, publish_model


class _Trap:
    """Unpickling this creates ``path``: proof that a pickle was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.path}",))


class _Worker:
    address = "test-worker"


def _plant(store: str, version: str, trap: Path, *, rewrite_manifest: bool) -> None:
    directory = Path(store) / MODEL_NAME / "versions" / version
    payload = pickle.dumps(_Trap(trap))
    (directory / MODEL_FILE).write_bytes(payload)
    if rewrite_manifest:
        manifest = json.loads((directory / "manifest.json").read_text())
        manifest["files"][MODEL_FILE] = hashlib.sha256(payload).hexdigest()
        (directory / "manifest.json").write_text(json.dumps(manifest))


def test_a_planted_pickle_is_refused_by_its_checksum_before_any_deserialisation(tmp_store: str, tmp_path: Path) -> None:
    version = publish_model(tmp_store, rows=200).version
    trap = tmp_path / "unpickled"
    _plant(tmp_store, version, trap, rewrite_manifest=False)
    with pytest.raises(ChecksumMismatchError, match=MODEL_FILE):
        ModelPlugin(tmp_store, MODEL_NAME, version, "cpu").setup(_Worker())
    assert not trap.exists()
    print(f"[guarantees] checksum mismatch refused; planted pickle executed: {trap.exists()}")


def test_a_planted_pickle_with_a_forged_manifest_is_still_never_unpickled(tmp_store: str, tmp_path: Path) -> None:
    version = publish_model(tmp_store, rows=200).version
    trap = tmp_path / "unpickled"
    _plant(tmp_store, version, trap, rewrite_manifest=True)
    loaded = ModelStore(tmp_store).load(f"{MODEL_NAME}:{version}")  # the checksum now matches
    with pytest.raises(ModelFormatError):
        KnnIndex.from_npz(loaded.files[MODEL_FILE])
    with pytest.raises(ModelFormatError):
        ModelPlugin(tmp_store, MODEL_NAME, version, "cpu").setup(_Worker())
    assert not trap.exists()


def test_the_stored_model_holds_arrays_only(tmp_store: str) -> None:
    import io
    import zipfile

    version = publish_model(tmp_store, rows=200).version
    payload = ModelStore(tmp_store).load(f"{MODEL_NAME}:{version}").files[MODEL_FILE]
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        names = sorted(archive.namelist())
    fields = ("task", "k", "metric", "features", "targets", "classes", "weights", "p", "scale_mean", "scale_scale")
    assert names == sorted(f"{name}.npy" for name in fields)
    with np.load(io.BytesIO(payload), allow_pickle=False) as arrays:
        assert all(arrays[name].dtype.kind != "O" for name in fields)
    KnnIndex.from_npz(payload)  # loads with allow_pickle=False
