"""The soak's memory samples: one per window, of the process and of its whole tree."""

from __future__ import annotations

import os
import subprocess
import sys

from stream.bench.soak import rss_mib, soak

GROW_ON_EACH_LINE = """
import sys
hoard = []
for line in sys.stdin:
    hoard.append(b"x" * (32 * 1024 * 1024))
    print("grown", flush=True)
"""


def test_one_sample_per_window_after_the_window_ran() -> None:
    """A fresh process that grows by 32 MiB in each window (this test process's own memory
    depends on what ran before it)."""
    with subprocess.Popen(
        [sys.executable, "-c", GROW_ON_EACH_LINE], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as grower:
        commands, answers = grower.stdin, grower.stdout
        assert commands is not None and answers is not None
        ran: list[int] = []

        def window(number: int) -> None:
            ran.append(number)
            commands.write(b"grow\n")
            commands.flush()
            assert answers.readline() == b"grown\n"

        try:
            result = soak(window, grower.pid, seconds=2.5, window_s=1.0)
        finally:
            grower.kill()
    assert ran == [0, 1, 2]
    assert len(result.worker_rss_mib) == len(result.tree_rss_mib) == 3
    assert result.growth_mib >= 60, result.worker_rss_mib


def test_the_tree_counts_the_children() -> None:
    hold_64_mib = "import sys; data = b'x' * (64 * 1024 * 1024); print('ready', flush=True); sys.stdin.read()"
    with subprocess.Popen([sys.executable, "-c", hold_64_mib], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == b"ready\n"
            own, total = rss_mib(os.getpid())
            assert total - own >= 60, (own, total)
        finally:
            child.kill()
