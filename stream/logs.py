"""Logging: JSON lines when not on a terminal, readable text on a terminal."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_RECORD_FIELDS = ("topic", "partition", "offset", "model_version")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and any known extra field."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in _RECORD_FIELDS:
            if hasattr(record, field):
                document[field] = getattr(record, field)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def configure_logging(level: str = "INFO", json_lines: bool | None = None) -> None:
    """Send logs to standard error, as JSON unless standard error is a terminal."""
    handler = logging.StreamHandler(sys.stderr)
    as_json = not sys.stderr.isatty() if json_lines is None else json_lines
    handler.setFormatter(
        JsonFormatter() if as_json else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("distributed", "tornado", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
