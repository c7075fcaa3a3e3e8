"""Manifest and ManifestDraft: validation, copying and exact JSON round trips."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from model_store import InvalidManifestError, Manifest, ManifestDraft

SHA = "a" * 64


def draft_values(**overrides: object) -> dict[str, Any]:
    values: dict[str, Any] = {
        "task": "classification",
        "k": 3,
        "metric": "cosine",
        "feature_names": ("x", "y"),
        "n_features": 2,
        "training_rows": 50,
        "backend": "numpy",
        "format": "npz",
        "classes": ("a", 1, 2.5),
        "holdout_metrics": {"accuracy": 1},
        "library_versions": {"numpy": "2.1.0", "sklearn": "1.5.2"},
        "extra": {"tags": ("nightly", "eu"), "nested": {"depth": [1, 2]}},
    }
    values.update(overrides)
    return values


def make_manifest(**overrides: object) -> Manifest:
    draft = ManifestDraft(**draft_values(**overrides))
    return Manifest.from_draft(
        draft,
        name="fraud",
        version="20261127T031502.000001Z-3fa9c1d2",
        created="2026-11-27T03:15:02.000001+00:00",
        files={"model.npz": SHA},
    )


def test_json_round_trip_is_exact() -> None:
    manifest = make_manifest()

    restored = Manifest.from_json(manifest.to_json())

    assert restored == manifest
    assert restored.feature_names == ("x", "y")
    assert restored.classes == ("a", 1, 2.5)
    assert isinstance(restored.classes[1], int) and isinstance(restored.classes[2], float)
    assert restored.holdout_metrics == {"accuracy": 1.0}
    assert restored.extra == {"tags": ["nightly", "eu"], "nested": {"depth": [1, 2]}}
    assert Manifest.from_json(restored.to_json().encode()) == manifest
    assert hash(restored) == hash(manifest)


def test_regression_round_trip() -> None:
    manifest = make_manifest(task="regression", classes=(), feature_names=())

    assert Manifest.from_json(manifest.to_json()) == manifest
    assert json.loads(manifest.to_json())["classes"] == []


def test_containers_are_copied_not_shared() -> None:
    metrics = {"accuracy": 0.9}
    extra: dict[str, Any] = {"tags": ["a"]}
    draft = ManifestDraft(**draft_values(holdout_metrics=metrics, extra=extra))
    metrics["accuracy"] = 0.0
    extra["tags"].append("b")

    assert draft.holdout_metrics == {"accuracy": 0.9}
    assert draft.extra == {"tags": ["a"]}
    assert make_manifest().to_dict()["extra"] is not make_manifest().extra


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"task": "clustering"}, "task"),
        ({"k": 0}, "k must"),
        ({"k": True}, "k must"),
        ({"k": 2.0}, "k must"),
        ({"n_features": 3}, "n_features"),
        ({"feature_names": ("x", "x")}, "duplicates"),
        ({"feature_names": "xy"}, "list or tuple"),
        ({"training_rows": -1}, "training_rows"),
        ({"metric": ""}, "metric"),
        ({"classes": ()}, "at least one class"),
        ({"classes": (True, 2)}, "boolean class labels cannot be mixed"),
        ({"classes": ((1, 2),)}, "class label"),
        ({"classes": (1.0, math.nan)}, "finite"),
        ({"task": "regression"}, "no classes"),
        ({"holdout_metrics": {"rmse": math.inf}}, "finite"),
        ({"holdout_metrics": {"rmse": "low"}}, "number"),
        ({"library_versions": {"numpy": 2}}, "str to str"),
        ({"extra": {"when": object()}}, "JSON-serialisable"),
        ({"extra": {1: "x"}}, "str keys"),
    ],
)
def test_draft_validation(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidManifestError, match=message):
        ManifestDraft(**draft_values(**overrides))


def test_manifest_validation() -> None:
    draft = ManifestDraft(**draft_values())
    good = {"name": "fraud", "version": "v1", "created": "2026-11-27T03:15:02+00:00"}

    with pytest.raises(InvalidManifestError, match="created"):
        Manifest.from_draft(draft, **{**good, "created": "2026-11-27T03:15:02+02:00"}, files={"m": SHA})
    with pytest.raises(InvalidManifestError, match="sha256"):
        Manifest.from_draft(draft, **good, files={"m": "ABC"})
    with pytest.raises(InvalidManifestError, match="reserved"):
        Manifest.from_draft(draft, **good, files={"manifest.json": SHA})
    with pytest.raises(InvalidManifestError, match="at least one file"):
        Manifest.from_draft(draft, **good, files={})
    with pytest.raises(InvalidManifestError, match="model name"):
        Manifest.from_draft(draft, **{**good, "name": "a/b"}, files={"m": SHA})


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("k"), "missing \\['k'\\]"),
        (lambda d: d.update(surprise=1), "unknown \\['surprise'\\]"),
        (lambda d: d.update(manifest_schema=99), "schema"),
        (lambda d: d.update(k="5"), "k must"),
        (lambda d: d.update(classes="ab"), "list or tuple"),
    ],
)
def test_from_json_rejects_malformed_documents(mutate: Any, message: str) -> None:
    data = make_manifest().to_dict()
    mutate(data)

    with pytest.raises(InvalidManifestError, match=message):
        Manifest.from_json(json.dumps(data))


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]"])
def test_from_json_rejects_non_objects(text: str) -> None:
    with pytest.raises(InvalidManifestError):
        Manifest.from_json(text)
