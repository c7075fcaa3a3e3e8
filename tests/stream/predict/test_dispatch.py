"""A part's request to a Dask worker: the task runs there as one of the worker's tasks would, its
errors come back as they were raised, and only the connection's errors send the part elsewhere."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from distributed import Client, get_worker

from stream.predict import dispatch
from stream.predict.cluster import close_client, start_client
from stream.predict.dispatch import PartCall, PartScorerPlugin, PartSender, WorkerUnreachableError

CALLS: list[str] = []


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    client = start_client("cpu", None, 1, in_process=True)
    client.wait_for_workers(1, timeout=60)
    client.register_plugin(PartScorerPlugin())
    try:
        yield client
    finally:
        close_client(client)


def _worker(client: Client) -> str:
    return sorted(client.scheduler_info()["workers"])[0]


def _sender(client: Client) -> PartSender:
    return PartSender(client, lambda now: [_worker(client)])


def where_and_what(payload: bytes, count: int) -> tuple[str, int]:
    return str(get_worker().address), len(payload) * count


def raise_os_error(payload: bytes) -> None:
    CALLS.append("os")
    raise FileNotFoundError(f"no such file: {payload.decode()}")


def raise_value_error(payload: bytes) -> None:
    raise ValueError("not a part")


def test_a_part_is_scored_on_the_worker_it_was_sent_to(client: Client) -> None:
    address = _worker(client)
    assert PartCall(_sender(client), address, where_and_what, (b"abc", 2)).result() == (address, 6)


def test_the_tasks_errors_are_raised_as_they_were_and_never_retried(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    CALLS.clear()
    with caplog.at_level(logging.WARNING, logger="stream.predict.dispatch"):
        with pytest.raises(FileNotFoundError, match=r"no such file: model\.npz"):
            PartCall(_sender(client), _worker(client), raise_os_error, (b"model.npz",)).result()
        with pytest.raises(ValueError, match="not a part"):
            PartCall(_sender(client), _worker(client), raise_value_error, (b"",)).result()
    assert CALLS == ["os"]  # an OSError of the task is not taken for a worker that has gone
    assert "is gone" not in caplog.text


def test_a_worker_without_the_handler_fails_the_part_after_every_try(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(dispatch, "RETRY_PAUSE_S", 0.01)
    monkeypatch.setattr(dispatch, "HANDLER", "knnstream_no_such_handler")
    with caplog.at_level(logging.WARNING), pytest.raises(WorkerUnreachableError, match="after 4 tries"):
        PartCall(_sender(client), _worker(client), where_and_what, (b"", 1)).result()
    assert caplog.text.count("its part goes to a running worker") == 3


def test_no_running_worker_is_a_clear_error(client: Client) -> None:
    sender = PartSender(client, lambda now: [])
    with pytest.raises(WorkerUnreachableError, match="lists no running worker"):
        sender.any_running()
