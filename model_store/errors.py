"""Typed exceptions raised by the model store; all derive from ModelStoreError."""

from __future__ import annotations

from stream.errors import KnnStreamError


class ModelStoreError(KnnStreamError):
    """Base class of every error the model store raises on purpose."""


class InvalidNameError(ModelStoreError, ValueError):
    """A model, alias, version or file name is not allowed."""


class InvalidArtifactError(ModelStoreError, ValueError):
    """The files handed to publish are empty or not bytes."""


class InvalidModelRefError(ModelStoreError, ValueError):
    """A model reference is neither ``name@alias`` nor ``name:version``."""


class InvalidManifestError(ModelStoreError, ValueError):
    """A manifest (or a draft of one) has a missing, mistyped or inconsistent field."""


class ModelNotFoundError(ModelStoreError, LookupError):
    """No model of the requested name exists in the store."""


class VersionNotFoundError(ModelNotFoundError):
    """The model exists but not the requested version."""


class AliasNotFoundError(ModelStoreError, LookupError):
    """The model exists but has no alias of the requested name."""


class ChecksumMismatchError(ModelStoreError):
    """A stored file does not match the sha256 recorded in its manifest."""


class MissingArtifactError(ChecksumMismatchError):
    """A file listed in the manifest is absent, so its checksum cannot match."""


class AliasInUseError(ModelStoreError):
    """A version cannot be deleted while an alias points at it."""


class NoPreviousVersionError(ModelStoreError):
    """An alias has no earlier (still existing) version to roll back to."""


class ConcurrentUpdateError(ModelStoreError):
    """Another writer held the model's lock for longer than the timeout."""


class CorruptAliasError(ModelStoreError):
    """An alias file exists but is not a valid alias record."""
