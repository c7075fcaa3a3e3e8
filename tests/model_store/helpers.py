"""What the store tests publish (the files, a manifest draft) and where they find it on disk."""

from __future__ import annotations

import json
from pathlib import Path

from model_store import ManifestDraft

FILES = {"model.npz": b"\x93NUMPY fake model bytes", "labels.json": b'["fraud", "ok"]'}


def make_draft(**overrides: object) -> ManifestDraft:
    values: dict[str, object] = {
        "task": "classification",
        "k": 5,
        "metric": "euclidean",
        "feature_names": ("amount", "age", "score"),
        "n_features": 3,
        "training_rows": 1000,
        "backend": "numpy",
        "format": "npz",
        "classes": ("fraud", "ok"),
        "holdout_metrics": {"accuracy": 0.93},
        "library_versions": {"numpy": "2.1.0"},
    }
    values.update(overrides)
    return ManifestDraft(**values)  # type: ignore[arg-type]


def version_dir(root: Path, name: str, version: str) -> Path:
    return root / name / "versions" / version


def alias_file(root: Path, name: str, alias: str) -> dict[str, object]:
    data = json.loads((root / name / "aliases" / f"{alias}.json").read_text())
    assert isinstance(data, dict)
    return data
