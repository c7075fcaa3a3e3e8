"""``knnstream train``'s settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from stream.settings.base import ComputeSettings, IndexChoice, Task


class TrainSettings(ComputeSettings):
    """``knnstream train``: fit, evaluate and publish a model."""

    data: str = Field(..., description="Parquet or CSV training data: path, glob or fsspec URL")
    label: str = Field(..., description="label column")
    features: str | None = Field(
        None, description="feature columns, comma-separated (default: every numeric column but the label)"
    )
    task: Task = Field("classification", description="classification or regression")
    k: str = Field("5", description="number of neighbours, or 'auto' to choose it on a validation split")
    k_candidates: str = Field("1,3,5,7,9,15,25", description="values tried by --k auto")
    metric: Literal["euclidean", "manhattan", "cosine", "minkowski"] = Field("euclidean", description="distance metric")
    p: float = Field(2.0, ge=1, description="power of the minkowski metric (1: manhattan, 2: euclidean)")
    scale: Literal["none", "standard"] = Field(
        "none",
        description="feature scaling: none, or standard (StandardScaler: mean 0, variance 1 on the training rows)",
    )
    weights: Literal["uniform", "distance"] = Field(
        "uniform", description="neighbour weights: uniform, or distance (inverse distance, as scikit-learn's)"
    )
    holdout_fraction: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="share of rows held out to report metrics before the model is fitted on every row (0: no holdout)",
    )
    seed: int = Field(0, description="random seed of the holdout and validation splits")
    store: str = Field("./models", description="model store root: a directory or fsspec URL")
    name: str = Field(..., description="model name in the store")
    alias: str | None = Field(None, description="alias to point at the new version, e.g. production")
    index: IndexChoice = Field(
        "brute",
        description="neighbour index served: brute (exact), ivf-flat, ivf-pq, cagra (GPU), hnsw, or auto (by size)",
    )
    min_recall: float = Field(
        0.99, gt=0, le=1, description="recall@k against exact search the index's search settings must reach"
    )

    @field_validator("k")
    @classmethod
    def _k_is_int_or_auto(cls, value: str) -> str:
        if value != "auto" and not (value.isdigit() and int(value) > 0):
            raise ValueError("k must be a positive integer or 'auto'")
        return value

    def feature_list(self) -> list[str] | None:
        if self.features is None:
            return None
        return [name.strip() for name in self.features.split(",") if name.strip()]

    def k_candidate_list(self) -> list[int]:
        return sorted({int(value) for value in self.k_candidates.split(",") if value.strip()})
