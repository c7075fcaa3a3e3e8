"""JSON log lines: the record fields (topic, partition, offset, model_version) travel as extras."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from stream.logs import JsonFormatter, configure_logging


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_record_extras_become_json_fields(capsys: pytest.CaptureFixture[str], restore_root_logger: None) -> None:
    configure_logging("INFO")  # standard error is captured, not a terminal: JSON lines
    log = logging.getLogger("knnstream.test")
    log.warning(
        "dead-lettering record",
        extra={"topic": "features", "partition": 2, "offset": 41, "model_version": "v7", "record_id": "rec-1"},
    )
    log.info("plain message")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("batch failed", extra={"topic": "features", "partition": 0, "offset": 5})

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 3
    first, plain, failed = lines
    assert first["message"] == "dead-lettering record" and first["level"] == "warning"
    assert first["logger"] == "knnstream.test"
    assert (first["topic"], first["partition"], first["offset"], first["model_version"]) == ("features", 2, 41, "v7")
    assert "record_id" not in first, "only the known record fields are copied, never arbitrary extras"
    assert {"topic", "partition", "offset", "model_version", "exception"}.isdisjoint(plain)
    assert failed["partition"] == 0 and failed["offset"] == 5 and "model_version" not in failed
    assert "ValueError: boom" in failed["exception"]
    assert first["time"].endswith("+00:00")


def test_text_lines_when_json_is_turned_off(capsys: pytest.CaptureFixture[str], restore_root_logger: None) -> None:
    configure_logging("INFO", json_lines=False)
    logging.getLogger("knnstream.test").info("offset %d committed", 9, extra={"offset": 9})
    line = capsys.readouterr().err.strip()
    assert line.endswith("INFO knnstream.test: offset 9 committed")
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_a_named_process_is_in_each_line(capsys: pytest.CaptureFixture[str], restore_root_logger: None) -> None:
    """Several consumer processes of ``serve --consumers`` write to one standard error."""
    configure_logging("INFO", json_lines=False, process="consumer 1")
    logging.getLogger("knnstream.test").info("stopped cleanly")
    assert capsys.readouterr().err.strip().endswith("INFO [consumer 1] knnstream.test: stopped cleanly")
    configure_logging("INFO", json_lines=True, process="consumer 1")
    logging.getLogger("knnstream.test").info("stopped cleanly")
    assert json.loads(capsys.readouterr().err)["process"] == "consumer 1"
    configure_logging("INFO", json_lines=True)
    logging.getLogger("knnstream.test").info("stopped cleanly")
    assert "process" not in json.loads(capsys.readouterr().err)


def test_non_json_values_are_written_as_strings() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "switched", (), None)
    record.model_version = object()  # anything unserialisable degrades to its str()
    document = json.loads(JsonFormatter().format(record))
    assert document["model_version"].startswith("<object object")


def test_librdkafka_lines_go_to_its_logger_at_debug_and_stay_off_an_info_console(
    capsys: pytest.CaptureFixture[str], restore_root_logger: None
) -> None:
    """A real producer with nothing listening at its address: its connection failures are logged
    through the ``librdkafka`` logger at DEBUG (shown by --log-level DEBUG), none on a console at INFO."""
    import pickle
    import time

    from confluent_kafka import Producer

    from stream.logs import LIBRDKAFKA_LOGGER
    from tests.helpers import free_port

    assert pickle.loads(pickle.dumps(LIBRDKAFKA_LOGGER)) is not None  # travels to the Dask workers in a config
    producer = Producer({"bootstrap.servers": f"127.0.0.1:{free_port()}", "logger": LIBRDKAFKA_LOGGER})
    configure_logging("DEBUG", json_lines=True)
    seen: list[dict[str, str]] = []
    deadline = time.monotonic() + 20
    while not seen and time.monotonic() < deadline:
        producer.poll(0.2)
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
        seen += [line for line in lines if line["logger"] == "librdkafka"]
    assert seen and {line["level"] for line in seen} == {"debug"}
    assert any("Connection refused" in line["message"] for line in seen)
    configure_logging("INFO", json_lines=True)
    for _ in range(10):  # librdkafka retries the connection every second or so
        producer.poll(0.2)
    assert "librdkafka" not in capsys.readouterr().err


def test_distributeds_shuffle_announcements_are_kept_to_errors(restore_root_logger: None) -> None:
    child = logging.getLogger("distributed.shuffle._scheduler_plugin")
    child.setLevel(logging.WARNING)  # as Dask's own set-up leaves it
    configure_logging("INFO")
    assert not child.isEnabledFor(logging.WARNING) and child.isEnabledFor(logging.ERROR)
