"""Command-line flags generated from the settings classes.

Every settings field becomes ``--field-name``; a flag given on the command line wins over
``KNNSTREAM_FIELD_NAME`` in the environment (or the field's own variable, e.g.
``KNNSTREAM_PRODUCE_FEATURES``: :func:`stream.settings.base.own_env`), which wins over the default.

pydantic-settings' own command line (``CliSettingsSource``) is not used: it parses one root
settings model, so the subcommands would become fields of a model of their own, the
``models``/``replay`` positionals, ``--log-level`` and bench's ``--json`` would be re-modelled,
and its help lines follow its own layout. This module keeps argparse's parsers and adds only a
flag per field, its help line (description, one default, the variable) and the error wording.
"""

from __future__ import annotations

import argparse
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from stream.errors import ConfigurationError

SettingsT = TypeVar("SettingsT", bound=BaseModel)


def add_settings_flags(
    parser: argparse.ArgumentParser, settings_class: type[BaseModel], skip: tuple[str, ...] = ()
) -> None:
    for name, field in settings_class.model_fields.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, dest=name, default=argparse.SUPPRESS, help=_help(name, field), **_kind(field))


def build_settings(settings_class: type[SettingsT], args: argparse.Namespace) -> SettingsT:
    """The settings from flags given (as init values), the environment and defaults."""
    given = {name: value for name, value in vars(args).items() if name in settings_class.model_fields}
    try:
        return settings_class(**given)
    except ValidationError as exc:
        raise ConfigurationError(_describe(exc)) from exc


def _kind(field: FieldInfo) -> dict[str, Any]:
    annotation_args = [arg for arg in get_args(field.annotation) if arg is not type(None)]
    literal_choices = [arg for arg in annotation_args if isinstance(arg, str)]
    if field.annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    if literal_choices and all(isinstance(arg, str) for arg in annotation_args):
        return {"choices": literal_choices}
    return {"metavar": _metavar(field)}


def _metavar(field: FieldInfo) -> str:
    annotation = field.annotation
    if annotation is int or int in get_args(annotation):
        return "N"
    if annotation is float or float in get_args(annotation):
        return "X"
    return "VALUE"


def env_name(name: str, field: FieldInfo) -> str:
    """The environment variable of a settings field."""
    alias = field.validation_alias
    return alias if isinstance(alias, str) else "KNNSTREAM_" + name.upper()


def _help(name: str, field: FieldInfo) -> str:
    """The description, one default (the description's own, when it names what unset means) and the variable."""
    description = field.description or ""
    if field.is_required():
        shown = "required; "
    elif "(default:" in description or field.default is None:
        shown = ""
    else:
        shown = f"default: {field.default}; "
    return f"{description} ({shown}env {env_name(name, field)})".replace("%", "%%")


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        location = _field_of(".".join(str(part) for part in error["loc"]))
        flag = "--" + location.replace("_", "-")
        if not location:  # a rule across several settings: its message names the flags
            problems.append(str(error["msg"]).removeprefix("Value error, "))
        elif error["type"] == "missing":
            problems.append(f"{flag} is required (or set {_env_of(location)})")
        else:
            problems.append(f"{flag}: {error['msg']}")
    return "; ".join(problems)


def _field_of(location: str) -> str:
    """The field a validation error's location names (an own variable's errors name the variable)."""
    if location.startswith("KNNSTREAM_") and "_" in location.removeprefix("KNNSTREAM_"):
        return location.removeprefix("KNNSTREAM_").split("_", 1)[1].lower()
    return location


def _env_of(name: str) -> str:
    return "KNNSTREAM_" + name.upper()
