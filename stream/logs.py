"""Logging: JSON lines when not on a terminal, readable text on a terminal."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_RECORD_FIELDS = ("topic", "partition", "offset", "model_version")
# Library loggers that speak of their own workings at WARNING, kept to their errors: distributed's
# shuffle announces every shuffle a training job starts ("Shuffle ... initialized by task ...").
QUIET_LIBRARY_LOGGERS = {"distributed.shuffle": logging.ERROR}


class LibrdkafkaLog:
    """The ``logger`` of every Kafka client (confluent-kafka's ``logger`` configuration key):
    librdkafka's own lines (connection refused, coordinator load in progress, ...) at DEBUG on
    the ``librdkafka`` logger, their level named in the line.

    What they mean for the worker reaches the console as the project's own line (an unreachable
    broker, an undelivered batch); ``--log-level DEBUG`` shows librdkafka's. A plain object of no
    state, so configurations holding it travel to the Dask workers.
    """

    def log(self, level: int, message: str, *args: object) -> None:
        logger = logging.getLogger("librdkafka")
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s " + message, logging.getLevelName(level), *args)


LIBRDKAFKA_LOGGER = LibrdkafkaLog()


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and any known extra field; with a
    ``process`` name (one of several processes of a command writing to one stream), that too."""

    def __init__(self, process: str | None = None) -> None:
        super().__init__()
        self._process = process

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self._process is not None:
            document["process"] = self._process
        for field in _RECORD_FIELDS:
            if hasattr(record, field):
                document[field] = getattr(record, field)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def configure_logging(level: str = "INFO", json_lines: bool | None = None, process: str | None = None) -> None:
    """Send logs to standard error, as JSON unless standard error is a terminal; ``process``
    names the process in each line (e.g. ``consumer 1`` of ``serve --consumers``)."""
    handler = logging.StreamHandler(sys.stderr)
    as_json = not sys.stderr.isatty() if json_lines is None else json_lines
    named = "" if process is None else f"[{process}] "
    handler.setFormatter(
        JsonFormatter(process)
        if as_json
        else logging.Formatter(f"%(asctime)s %(levelname)s {named}%(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("distributed", "tornado", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    quiet_library_loggers()


def quiet_library_loggers() -> None:
    """Keep :data:`QUIET_LIBRARY_LOGGERS` to their level (again after Dask set its own levels)."""
    for quiet, level in QUIET_LIBRARY_LOGGERS.items():
        for name in [quiet, *(name for name in logging.root.manager.loggerDict if name.startswith(quiet + "."))]:
            logging.getLogger(name).setLevel(max(level, logging.getLogger().level))
