"""Promise 10: a model file is refused before it is deserialised unless its checksum matches, and
even a matching file never runs code: the payloads planted here are live (unpickling them
creates a file, checked first), and the file never appears when the worker's loading path
(the Dask worker plugin) reads them.

test_model_loading.py plants a bare pickle; this also hides one in an ``.npz`` object array,
which a checksum cannot catch when the attacker publishes the whole version.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from model_store import ChecksumMismatchError, ModelStore
from stream.predict.model import MODEL_FILE, ModelFormatError
from stream.predict.plugin import ModelPlugin
from tests.stream.guarantees.scenario import MODEL_NAME, publish_model, report


class Trap:
    """Unpickling this runs ``touch <path>``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.path}",))


class _DaskWorker:
    address = "tcp://test-worker"


def _npz_with_object_array(trap: Path) -> bytes:
    buffer = io.BytesIO()
    np.savez(
        buffer,
        task=np.array("classification"),
        k=np.array(5),
        metric=np.array("euclidean"),
        features=np.array([Trap(trap)], dtype=object),
        targets=np.zeros(1, dtype=np.int32),
        classes=np.arange(1),
    )
    return buffer.getvalue()


def _plant(store: str, version: str, payload: bytes, forge_manifest: bool) -> None:
    """Replace the version's model file; the attacker may also rewrite the manifest's sha256."""
    directory = Path(store) / MODEL_NAME / "versions" / version
    (directory / MODEL_FILE).write_bytes(payload)
    if forge_manifest:
        manifest = json.loads((directory / "manifest.json").read_text())
        manifest["files"][MODEL_FILE] = hashlib.sha256(payload).hexdigest()
        (directory / "manifest.json").write_text(json.dumps(manifest))


def _load_on_a_dask_worker(store: str, version: str) -> None:
    ModelPlugin(store, MODEL_NAME, version, "cpu").setup(_DaskWorker())


def test_the_planted_payloads_are_live(tmp_path: Path) -> None:
    """Without this, the refusals below could pass with a payload that never did anything."""
    pickled, in_npz = tmp_path / "from-pickle", tmp_path / "from-npz"
    pickle.loads(pickle.dumps(Trap(pickled)))  # the point of the control
    with np.load(io.BytesIO(_npz_with_object_array(in_npz)), allow_pickle=True) as arrays:
        arrays["features"]
    assert pickled.exists() and in_npz.exists()


@pytest.mark.parametrize("forge_manifest", [False, True], ids=["checksum-mismatch", "forged-manifest"])
@pytest.mark.parametrize("payload_kind", ["pickle", "npz-object-array"])
def test_a_planted_model_file_never_runs_code(
    tmp_store: str,
    tmp_path: Path,
    payload_kind: str,
    forge_manifest: bool,
    record_property: Callable[[str, object], None],
) -> None:
    version = publish_model(tmp_store, rows=200).version
    trap = tmp_path / "code-ran"
    payload = pickle.dumps(Trap(trap)) if payload_kind == "pickle" else _npz_with_object_array(trap)
    _plant(tmp_store, version, payload, forge_manifest)
    refusal = ModelFormatError if forge_manifest else ChecksumMismatchError
    with pytest.raises(refusal) as refused:
        _load_on_a_dask_worker(tmp_store, version)
    report(
        record_property,
        f"model file: {payload_kind}, {'forged' if forge_manifest else 'original'} manifest",
        refused_with=type(refused.value).__name__,
        code_ran=trap.exists(),
    )
    print(f"[guarantees] {refused.value}")
    assert not trap.exists()


def test_a_model_is_stored_as_plain_arrays(tmp_store: str) -> None:
    version = publish_model(tmp_store, rows=200).version
    payload = ModelStore(tmp_store).load(f"{MODEL_NAME}:{version}").files[MODEL_FILE]
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        assert all(name.endswith(".npy") for name in archive.namelist())
    with np.load(io.BytesIO(payload), allow_pickle=False) as arrays:
        kinds = {name: arrays[name].dtype.kind for name in arrays.files}
    assert "O" not in kinds.values(), kinds
