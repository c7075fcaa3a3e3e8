"""``knnstream topics create``: the input, output and dead-letter topics of a worker."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from stream.cli.flags import add_settings_flags, build_settings
from stream.settings import TopicsSettings


def add_topics_parser(commands: Any) -> None:
    topics = commands.add_parser("topics", help="create the worker's topics", description="Kafka topics")
    actions = topics.add_subparsers(dest="action", required=True, metavar="ACTION")
    summary = "create the input, output and dead-letter topics (those that exist are left as they are)"
    create = actions.add_parser("create", help=summary, description=summary)
    add_settings_flags(create, TopicsSettings)
    create.set_defaults(handler=_create)


def _create(args: argparse.Namespace) -> int:
    from stream.sink.admin import cluster_metadata, create_topics

    settings = build_settings(TopicsSettings, args)
    config = settings.librdkafka_config()
    cluster_metadata(config)  # an unreachable broker is one line, not a timeout per topic
    created = create_topics(
        config,
        settings.topics(),
        settings.partitions,
        config=settings.topic_config(),
        replication_factor=settings.replication_factor,
    )
    for topic in settings.topics():
        state = f"created ({settings.partitions} partitions)" if topic in created else "exists already"
        print(f"{topic}: {state}", file=sys.stderr)
    return 0
