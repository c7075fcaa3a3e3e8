"""``knnstream``: train, serve, produce, topics, models, demo, bench, score, replay."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from stream.cli.backfill import add_backfill_parsers
from stream.cli.flags import add_settings_flags, build_settings
from stream.cli.models import add_models_parser
from stream.cli.topics import add_topics_parser
from stream.errors import KnnStreamError
from stream.logs import configure_logging
from stream.settings import BenchSettings, DemoSettings, ProduceSettings, ServeSettings, TrainSettings

Command = Callable[[argparse.Namespace], int]


def _train(args: argparse.Namespace) -> int:
    from stream.train.job import train

    manifest = train(build_settings(TrainSettings, args))
    metrics = ", ".join(f"{name}={value:.4f}" for name, value in manifest.holdout_metrics.items())
    print(
        f"trained {manifest.name} k={manifest.k} on {manifest.training_rows} rows; holdout {metrics}", file=sys.stderr
    )
    from stream.train.indexing import describe_index

    index = manifest.extra.get("index")
    if index and index.get("kind") != "brute":
        print(f"index {describe_index(index)}", file=sys.stderr)
    print(manifest.version)
    return 0


def _serve(args: argparse.Namespace) -> int:
    settings = build_settings(ServeSettings, args)
    if settings.consumers > 1:
        from stream.serve.consumers import serve_consumers

        serve_consumers(settings)
        return 0
    from stream.serve.worker import serve

    serve(settings)
    return 0


def _produce(args: argparse.Namespace) -> int:
    from stream.demo.produce_command import run_produce

    sent = run_produce(build_settings(ProduceSettings, args))
    print(f"sent {sent} records", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from stream.demo.run import run_demo

    run_demo(build_settings(DemoSettings, args))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from stream.bench.run import run_bench

    run_bench(build_settings(BenchSettings, args))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="knnstream", description="Streaming K-nearest-neighbours predictions on Kafka, on GPUs or CPUs."
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default: INFO)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, settings_class, handler, summary in (
        ("train", TrainSettings, _train, "fit, evaluate and publish a KNN model"),
        ("serve", ServeSettings, _serve, "run the streaming prediction worker"),
        ("produce", ProduceSettings, _produce, "send feature records to a topic"),
        ("demo", DemoSettings, _demo, "run the whole system on this machine"),
    ):
        command = commands.add_parser(name, help=summary, description=summary)
        add_settings_flags(command, settings_class)
        command.set_defaults(handler=handler)
    summary = "raw predict throughput vs end-to-end throughput and latency, from one run"
    bench = commands.add_parser("bench", help=summary, description=summary)
    add_settings_flags(bench, BenchSettings, skip=("json_output",))
    bench.add_argument(
        "--json",
        dest="json_output",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one JSON object instead of a table (env KNNSTREAM_JSON_OUTPUT)",
    )
    bench.set_defaults(handler=_bench)
    add_topics_parser(commands)
    add_models_parser(commands)
    add_backfill_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    handler: Command = args.handler
    try:
        return handler(args)
    except KnnStreamError as exc:
        print(f"knnstream {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
