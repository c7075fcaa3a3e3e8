"""Name rules, version identifiers, timestamps and checksums shared by the store."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta

from model_store.errors import InvalidNameError

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
MANIFEST_FILENAME = "manifest.json"

_NAME_RE = re.compile(NAME_PATTERN)
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_VERSION_TIME_FORMAT = "%Y%m%dT%H%M%S.%f"
_VERSION_RANDOM_BYTES = 4


def is_valid_name(value: object) -> bool:
    """Whether ``value`` may name a model, alias, version or file."""
    return isinstance(value, str) and _NAME_RE.fullmatch(value) is not None


def check_name(kind: str, value: object) -> str:
    """Return ``value`` if it is a valid ``kind`` name, else raise InvalidNameError."""
    if not is_valid_name(value):
        raise InvalidNameError(
            f"invalid {kind} name {value!r}: expected 1-128 characters from "
            "letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
    assert isinstance(value, str)
    return value


def check_filename(value: object) -> str:
    """Return ``value`` if it may name a stored model file (not the manifest)."""
    name = check_name("file", value)
    if name == MANIFEST_FILENAME:
        raise InvalidNameError(f"file name {MANIFEST_FILENAME!r} is reserved for the manifest")
    return name


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """ISO-8601 text of an aware datetime, converted to UTC, with microseconds."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def is_iso_utc(value: object) -> bool:
    """Whether ``value`` is ISO-8601 text of a UTC instant (offset zero)."""
    if not isinstance(value, str):
        return False
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return False
    return parsed.utcoffset() == timedelta(0)


def new_version(moment: datetime) -> str:
    """A sortable, practically unique version id, e.g. ``20261127T031502.482113Z-3fa9c1d2``.

    The UTC timestamp (microseconds) makes ids sort chronologically; the random
    suffix keeps ids from concurrent publishers distinct without any lock.
    """
    stamp = moment.astimezone(UTC).strftime(_VERSION_TIME_FORMAT)
    return f"{stamp}Z-{secrets.token_hex(_VERSION_RANDOM_BYTES)}"


def new_token() -> str:
    """A random hex token for staging directories, temp files and lock owners."""
    return secrets.token_hex(8)


def sha256_hex(data: bytes) -> str:
    """Lower-case hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def is_sha256_hex(value: object) -> bool:
    """Whether ``value`` is 64 lower-case hex digits."""
    return isinstance(value, str) and _SHA256_RE.fullmatch(value) is not None
