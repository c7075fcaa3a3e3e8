"""Versioned store of model artifacts: named files plus a manifest, with movable aliases.

The root is a local directory or any fsspec URL (``memory://``, ``file://``, ``s3://``...).
"""

from model_store.aliases import AliasChange, AliasRecord
from model_store.errors import (
    AliasInUseError,
    AliasNotFoundError,
    ChecksumMismatchError,
    ConcurrentUpdateError,
    CorruptAliasError,
    InvalidArtifactError,
    InvalidManifestError,
    InvalidModelRefError,
    InvalidNameError,
    MissingArtifactError,
    ModelNotFoundError,
    ModelStoreError,
    NoPreviousVersionError,
    VersionNotFoundError,
)
from model_store.manifest import ClassLabel, Manifest, ManifestDraft, Task
from model_store.refs import ModelRef, parse_model_ref
from model_store.store import LoadedModel, ModelStore

__all__ = [
    "AliasChange",
    "AliasInUseError",
    "AliasNotFoundError",
    "AliasRecord",
    "ChecksumMismatchError",
    "ClassLabel",
    "ConcurrentUpdateError",
    "CorruptAliasError",
    "InvalidArtifactError",
    "InvalidManifestError",
    "InvalidModelRefError",
    "InvalidNameError",
    "LoadedModel",
    "Manifest",
    "ManifestDraft",
    "MissingArtifactError",
    "ModelNotFoundError",
    "ModelRef",
    "ModelStore",
    "ModelStoreError",
    "NoPreviousVersionError",
    "Task",
    "VersionNotFoundError",
    "parse_model_ref",
]
