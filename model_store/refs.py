"""References to a stored model: ``name@alias`` or ``name:version``."""

from __future__ import annotations

from dataclasses import dataclass

from model_store.errors import InvalidModelRefError
from model_store.names import is_valid_name

ALIAS_SEPARATOR = "@"
VERSION_SEPARATOR = ":"


@dataclass(frozen=True)
class ModelRef:
    """A model name plus exactly one of an alias or a version."""

    name: str
    alias: str | None = None
    version: str | None = None

    def __post_init__(self) -> None:
        if (self.alias is None) == (self.version is None):
            raise InvalidModelRefError(f"model ref for {self.name!r} needs exactly one of alias or version")
        _check_part("model name", self.name, str(self))
        target = self.alias if self.alias is not None else self.version
        _check_part("alias" if self.alias is not None else "version", target, str(self))

    @classmethod
    def for_alias(cls, name: str, alias: str) -> ModelRef:
        """The reference ``name@alias``."""
        return cls(name=name, alias=alias)

    @classmethod
    def for_version(cls, name: str, version: str) -> ModelRef:
        """The reference ``name:version``."""
        return cls(name=name, version=version)

    @property
    def is_alias(self) -> bool:
        """Whether this reference goes through an alias (and may move over time)."""
        return self.alias is not None

    def __str__(self) -> str:
        if self.alias is not None:
            return f"{self.name}{ALIAS_SEPARATOR}{self.alias}"
        return f"{self.name}{VERSION_SEPARATOR}{self.version}"


def parse_model_ref(text: str) -> ModelRef:
    """Parse ``name@alias`` or ``name:version``; InvalidModelRefError on anything else."""
    if not isinstance(text, str):
        raise InvalidModelRefError(f"model ref must be a string, got {type(text).__name__}")
    has_alias = ALIAS_SEPARATOR in text
    has_version = VERSION_SEPARATOR in text
    if has_alias == has_version:
        raise InvalidModelRefError(
            f"invalid model ref {text!r}: expected 'name@alias' (e.g. 'fraud@prod') "
            "or 'name:version' (e.g. 'fraud:20261127T031502.482113Z-3fa9c1d2')"
        )
    separator = ALIAS_SEPARATOR if has_alias else VERSION_SEPARATOR
    name, _, target = text.partition(separator)
    if separator in target:
        raise InvalidModelRefError(f"invalid model ref {text!r}: {separator!r} appears twice")
    if has_alias:
        return ModelRef(name=name, alias=target)
    return ModelRef(name=name, version=target)


def as_model_ref(ref: str | ModelRef) -> ModelRef:
    """``ref`` itself if already a ModelRef, else the parse of it."""
    return ref if isinstance(ref, ModelRef) else parse_model_ref(ref)


def _check_part(kind: str, value: object, ref_text: str) -> None:
    if not is_valid_name(value):
        raise InvalidModelRefError(
            f"invalid model ref {ref_text!r}: {kind} {value!r} must be 1-128 characters "
            "from letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
