"""``knnstream models``: list, show, promote, rollback and delete model versions."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from model_store import AliasChange, ModelStore, ModelStoreError
from stream.cli.flags import add_settings_flags, build_settings
from stream.settings import StoreSettings
from stream.train.indexing import describe_index


def add_models_parser(commands: Any) -> None:
    models = commands.add_parser("models", help="inspect and move model versions", description="the model store")
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, handler, summary, arguments in (
        ("list", _list, "models, their versions and aliases", [("name", "?", "only this model")]),
        ("show", _show, "the manifest of NAME@ALIAS or NAME:VERSION", [("ref", None, "NAME@ALIAS or NAME:VERSION")]),
        (
            "promote",
            _promote,
            "point an alias at a version",
            [("name", None, "model name"), ("version", None, "version to point at")],
        ),
        ("rollback", _rollback, "move an alias back to its previous version", [("name", None, "model name")]),
        (
            "delete",
            _delete,
            "delete a version no alias points at",
            [("name", None, "model name"), ("version", None, "version to delete")],
        ),
        (
            "prune",
            _prune,
            "keep the newest versions and those aliases point at; delete the rest",
            [("name", None, "model name")],
        ),
    ):
        action = actions.add_parser(name, help=summary, description=summary)
        add_settings_flags(action, StoreSettings)
        if name in {"promote", "rollback"}:
            action.add_argument("--alias", default="production", help="alias to move (default: production)")
        if name == "prune":
            action.add_argument("--keep", type=int, default=5, help="newest versions to keep (default: 5)")
        for argument, nargs, text in arguments:
            action.add_argument(argument, nargs=nargs, help=text)
        action.set_defaults(handler=handler)


def _store(args: argparse.Namespace) -> ModelStore:
    return ModelStore(build_settings(StoreSettings, args).store)


def _list(args: argparse.Namespace) -> int:
    store = _store(args)
    names = [args.name] if args.name else store.list_models()
    if not names:
        raise ModelStoreError(f"no models in {store.root}: train one with knnstream train --store {store.root}")
    for name in names:
        by_version: dict[str, list[str]] = {}
        for alias, version in store.aliases(name).items():
            by_version.setdefault(version, []).append(alias)
        for manifest in store.list_versions(name):
            metrics = " ".join(f"{key}={value:.4f}" for key, value in manifest.holdout_metrics.items())
            aliases = ",".join(sorted(by_version.get(manifest.version, [])))
            print(f"{name}:{manifest.version}\t{manifest.task}\tk={manifest.k}\t{metrics}\t{aliases}")
    return 0


def _show(args: argparse.Namespace) -> int:
    manifest = _store(args).resolve(args.ref)
    print(manifest.to_json())
    index = manifest.extra.get("index")
    if index:
        print(f"index {describe_index(index)}", file=sys.stderr)
    return 0


def _promote(args: argparse.Namespace) -> int:
    _print_change(_store(args).promote(args.name, args.alias, args.version))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    _print_change(_store(args).rollback(args.name, args.alias))
    return 0


def _delete(args: argparse.Namespace) -> int:
    _store(args).delete_version(args.name, args.version)
    print(f"deleted {args.name}:{args.version}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    store = _store(args)
    for version in versions_to_prune(store, args.name, args.keep):
        store.delete_version(args.name, version)
        print(f"deleted {args.name}:{version}")
    return 0


def versions_to_prune(store: ModelStore, name: str, keep: int) -> list[str]:
    """Versions older than the ``keep`` newest that no alias points at (the retention rule)."""
    aliased = set(store.aliases(name).values())
    versions = [manifest.version for manifest in store.list_versions(name)]  # oldest first
    newest = set(versions[-keep:]) if keep > 0 else set()
    return [version for version in versions if version not in newest and version not in aliased]


def _print_change(change: AliasChange) -> None:
    print(json.dumps({"model": change.name, "alias": change.alias, "from": change.previous, "to": change.version}))
