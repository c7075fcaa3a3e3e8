"""A batch's parts sent straight to the Dask workers that hold the model, and their answers back.

A Dask task costs the scheduler a round of messages and state changes for every part (submitted,
assigned, run, done, released), and its data a scatter and a gather of their own. With several
consumers sharing one cluster, the scheduler's one event loop sets the pace: on a 2-core VM a
100 kB part took 21 ms from the driver back to the driver as scatter, task and gather through the
scheduler, 3 to 4 ms as one request to the worker itself (docs/stream-performance.md). So every worker
gets a request handler (:class:`PartScorerPlugin`, a ``WorkerPlugin``: replacements get it too),
and a consumer sends each part to a worker with one request on the connection its Dask client
keeps to that worker; the scheduler sees neither the part nor its answer.

The handler runs the scoring function on the worker's own threads, the ones its tasks run on: the
parts of several batches, and of several consumers, are scored side by side. A worker that has
gone (killed, replaced by its nanny, retired) fails the request with ``OSError``; the part then
goes to a worker that is running, a few times before the batch fails (and is retried from its
offsets by the pipeline).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from distributed import Client, WorkerPlugin
from distributed.core import send_recv
from distributed.protocol import to_serialize

from stream.errors import KnnStreamError

log = logging.getLogger(__name__)
HANDLER = "knnstream_score_part"
PLUGIN_NAME = "knnstream-part-scorer"
CALL_ATTEMPTS = 4  # the first request and three more, each to a worker then running
RETRY_PAUSE_S = 0.5  # for the scheduler to learn that a worker has gone, and of its replacement
CONNECT_TIMEOUT_S = 5.0  # to a worker the client has no open connection to; a running one answers in ms


class WorkerUnreachableError(KnnStreamError):
    """No running Dask worker took a part of a batch, after :data:`CALL_ATTEMPTS` tries."""


class PartScorerPlugin(WorkerPlugin):
    """Adds the worker's :data:`HANDLER` (:func:`score_on`): ``task(*args)`` on its threads."""

    name = PLUGIN_NAME

    def setup(self, worker: Any) -> None:
        # Bound to its worker: the workers of a cluster in one process may share one plugin object.
        async def score_part(task: Callable[..., Any], args: tuple[Any, ...]) -> dict[str, Any]:
            return await score_on(worker, task, args)

        worker.handlers[HANDLER] = score_part

    def teardown(self, worker: Any) -> None:
        worker.handlers.pop(HANDLER, None)


async def score_on(worker: Any, task: Callable[..., Any], args: tuple[Any, ...]) -> dict[str, Any]:
    """The handler: ``task(*args)`` on one of ``worker``'s threads; its answer, or what it raised."""
    # get_worker() in the task finds the worker as in one of its tasks: Dask runs those, and
    # its actors' calls, with this context variable set (it has no public setter).
    from distributed.worker import _worker_cvar

    context = contextvars.copy_context()
    context.run(_worker_cvar.set, worker)
    run = functools.partial(context.run, task, *args)
    try:
        answer = await asyncio.get_running_loop().run_in_executor(worker.executors["default"], run)
    except Exception as exc:  # noqa: BLE001 - the task's error goes back to the driver, raised there
        return {"status": "error", "exception": to_serialize(exc)}
    return {"status": "OK", "answer": to_serialize(answer)}


@dataclass(frozen=True)
class Answer:
    """What the task returned, or what it raised: kept apart from the connection's own errors,
    so that an ``OSError`` of the task is raised as it is, not taken for a worker that has gone."""

    value: Any = None
    failure: BaseException | None = None

    def unwrap(self) -> Any:
        if self.failure is not None:
            raise self.failure
        return self.value


class PartCall:
    """One part's request to a worker; :meth:`result` waits for its answer, sending the part to
    a running worker again when the one it went to has gone."""

    def __init__(self, sender: PartSender, address: str, task: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._sender = sender
        self._task, self._args = task, args
        self.address = address
        self._future = sender.send(address, task, args)

    def result(self) -> Any:
        """The task's answer; raises what the task raised, or :class:`WorkerUnreachableError`."""
        for attempt in range(1, CALL_ATTEMPTS + 1):
            try:
                answer = self._future.result()
            except OSError as exc:  # the connection to the worker (the task's own errors are in the answer)
                if attempt == CALL_ATTEMPTS:
                    raise WorkerUnreachableError(
                        f"no Dask worker took the part after {attempt} tries; the last, {self.address}: {exc!r}"
                    ) from exc
                log.warning("Dask worker %s is gone (%r); its part goes to a running worker", self.address, exc)
                time.sleep(RETRY_PAUSE_S * (attempt - 1))  # at once the first time: the others may be up
                self.address = self._sender.any_running()
                self._future = self._sender.send(self.address, self._task, self._args)
                continue
            return answer.unwrap()
        raise AssertionError("unreachable")  # the loop returns or raises


class PartSender:
    """Sends parts to the workers' :data:`HANDLER` on the Dask client's own connections."""

    def __init__(self, client: Client, running_workers: Callable[[bool], list[str]]) -> None:
        self._client = client
        self._running_workers = running_workers  # True: ask the scheduler now, not the cached list

    def send(self, address: str, task: Callable[..., Any], args: tuple[Any, ...]) -> Future[Answer]:
        """Start ``task(*args)`` on the worker at ``address``; its future, returned at once."""
        loop = self._client.loop
        if loop is None:
            raise WorkerUnreachableError("the Dask client is closed")
        event_loop: asyncio.AbstractEventLoop = loop.asyncio_loop  # type: ignore[attr-defined]  # tornado's AsyncIOLoop
        return asyncio.run_coroutine_threadsafe(self._request(address, task, args), event_loop)

    def any_running(self) -> str:
        """A running worker's address, asked of the scheduler now."""
        workers = self._running_workers(True)
        if not workers:
            raise WorkerUnreachableError("the Dask scheduler lists no running worker")
        return workers[0]

    async def _request(self, address: str, task: Callable[..., Any], args: tuple[Any, ...]) -> Answer:
        pool = self._client.rpc  # the client's connections to the workers, one reused per request
        # A worker that has gone refuses the connection, which Dask tries again for its whole connect
        # timeout (30 s by default): a short one of its own sends the part elsewhere sooner.
        comm = await pool.connect(address, timeout=CONNECT_TIMEOUT_S)
        try:
            response = await send_recv(comm, op=HANDLER, task=to_serialize(task), args=to_serialize(args))
        finally:
            pool.reuse(address, comm)
        if isinstance(response, dict) and response.get("status") == "OK":
            return Answer(response["answer"])
        if isinstance(response, dict) and "exception" in response:
            return Answer(failure=response["exception"])
        # Not the handler's answer: the worker has none yet (a replacement setting its plugins up).
        raise OSError(f"Dask worker {address} has no part scorer yet (it answered {response!r})")
