"""Fixtures of the delivery-guarantee scenarios, and their figures in the terminal summary."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from model_store import Manifest
from tests.stream.guarantees.scenario import Scale, current_scale, publish_model
from tests.stream.guarantees.topics import Topics


@pytest.fixture(scope="session")
def scale() -> Scale:
    return current_scale()


@pytest.fixture
def model(tmp_store: str) -> Manifest:
    """A small model (3,000 rows) at ``blobs@production`` in ``tmp_store``."""
    return publish_model(tmp_store, rows=3_000)


@pytest.fixture
def topics(new_topic: Callable[..., str]) -> Callable[[int], Topics]:
    """Fresh input, output and dead-letter topics; the input and output get ``partitions`` each."""

    def make(partitions: int) -> Topics:
        return Topics(new_topic("in", partitions), new_topic("out", partitions), new_topic("dlq"))

    return make


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line of figures per scenario, whether or not output capture was on."""
    lines = []
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            for name, value in getattr(report, "user_properties", []):
                if name == "guarantee" and getattr(report, "when", "") == "call":
                    lines.append(f"{outcome.upper():6} {value}")
    if lines:
        terminalreporter.section("delivery guarantees: figures")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _announce(request: pytest.FixtureRequest, scale: Scale) -> Iterator[None]:
    print(f"\n[guarantees] {request.node.name} at scale {scale.name}: {scale}")
    yield
