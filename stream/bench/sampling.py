"""The thread of one of the benchmark's samplers: a daemon that samples until told to stop,
joined for a bounded time (a call that hangs must not hold the benchmark up; as a daemon, it
does not hold the process either)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class SamplingThread:
    """Runs ``run(stopping)`` in a daemon thread named ``name`` between :meth:`start` and :meth:`stop`."""

    def __init__(self, name: str, run: Callable[[threading.Event], None], join_timeout_s: float) -> None:
        self._name, self._run, self._join_timeout_s = name, run, join_timeout_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, args=(self._stopping,), name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> bool:
        """Tell the thread to stop and wait for it; whether it stopped in time (``False`` also
        when it never started)."""
        if self._thread is None:
            return False
        self._stopping.set()
        self._thread.join(timeout=self._join_timeout_s)
        stopped = not self._thread.is_alive()
        if not stopped:
            log.warning("the %s did not stop within %.0f s", self._name, self._join_timeout_s)
        self._thread = None
        return stopped
