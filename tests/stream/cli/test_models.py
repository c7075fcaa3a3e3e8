"""``knnstream models`` on a real store, through the command line's own entry point."""

from __future__ import annotations

import json

import pytest

from model_store import Manifest, ManifestDraft, ModelStore
from stream.cli.main import main
from stream.predict.model import FORMAT, MODEL_FILE, index_from_training_data
from tests.helpers import blobs


def publish_model(store: str, rows: int, alias: str, seed: int) -> Manifest:
    features, labels = blobs(rows, seed)
    index = index_from_training_data("classification", 3, "euclidean", features, labels)
    draft = ManifestDraft(
        task="classification", k=3, metric="euclidean", feature_names=tuple(f"f{i}" for i in range(6)), n_features=6,
        classes=tuple(index.classes.tolist()), training_rows=rows, backend="cpu", format=FORMAT,
    )  # fmt: skip
    return ModelStore(store).publish("blobs", {MODEL_FILE: index.to_npz()}, draft, aliases=[alias])


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_show_promote_rollback_delete_and_prune(tmp_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    versions = [publish_model(tmp_store, rows=100, alias="production", seed=seed).version for seed in range(4)]
    code, out, _ = _run(capsys, "models", "list", "--store", tmp_store)
    assert code == 0 and len(out.strip().splitlines()) == 4
    assert f"blobs:{versions[-1]}" in out and "production" in out.splitlines()[-1]

    code, out, _ = _run(capsys, "models", "show", "--store", tmp_store, "blobs@production")
    assert code == 0 and json.loads(out)["version"] == versions[-1]

    code, out, _ = _run(
        capsys, "models", "promote", "--store", tmp_store, "--alias", "production", "blobs", versions[0]
    )
    assert code == 0 and json.loads(out) == {
        "model": "blobs",
        "alias": "production",
        "from": versions[-1],
        "to": versions[0],
    }
    code, out, _ = _run(capsys, "models", "rollback", "--store", tmp_store, "--alias", "production", "blobs")
    assert code == 0 and json.loads(out)["to"] == versions[-1]

    code, _, err = _run(capsys, "models", "delete", "--store", tmp_store, "blobs", versions[-1])
    assert code == 1 and "knnstream models: error:" in err  # the alias points at it

    code, out, _ = _run(capsys, "models", "prune", "--store", tmp_store, "--keep", "1", "blobs")
    assert code == 0
    remaining = [m.version for m in ModelStore(tmp_store).list_versions("blobs")]
    assert remaining == [versions[-1]], "the newest is kept and it is the aliased one"
    assert out.count("deleted") == 3


def test_errors_are_one_line_and_a_non_zero_exit(tmp_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "models", "show", "--store", tmp_store, "nothing@production")
    assert code == 1 and err.strip().startswith("knnstream models: error:") and len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, "train", "--data", "x.parquet", "--name", "m")
    assert code == 1 and "--label is required" in err
