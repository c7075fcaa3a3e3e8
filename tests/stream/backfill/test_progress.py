"""The progress line on a terminal and the Prometheus counters of the batch jobs."""

from __future__ import annotations

import io
import urllib.request

from stream.backfill.progress import BackfillMetrics, MetricsEndpoint, Progress, ProgressLine, progress_line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_line_rewrites_itself_on_a_terminal_and_ends_with_a_newline() -> None:
    terminal = Terminal()
    line = progress_line("replay", "auto", terminal)
    assert isinstance(line, ProgressLine)
    progress = Progress("replay", BackfillMetrics(), line, unit="offsets")
    progress.start("blobs", "v1", total=200)
    progress.advance(50, records=50, predicted=49, rejected={"invalid_json": 1})
    progress.advance(150, records=150, predicted=150)
    progress.finish()
    text = terminal.getvalue()
    assert text.startswith("\rreplay: 0/200 offsets") and text.endswith("\n")
    assert text.count("\n") == 1, "one line, rewritten in place"
    last = text.rstrip("\n").split("\r")[-1]
    assert "200/200 offsets (100.0%), 199 predicted, 1 rejected" in last


def test_no_progress_line_off_a_terminal_unless_asked_for() -> None:
    assert progress_line("score", "auto", io.StringIO()) is None
    assert progress_line("score", "never", Terminal()) is None
    assert progress_line("score", "always", io.StringIO()) is not None


def test_counters_are_served_on_the_metrics_endpoint() -> None:
    metrics = BackfillMetrics()
    progress = Progress("score", metrics, None, unit="parts")
    progress.start("blobs", "v1", total=4)
    progress.advance(1, records=10, predicted=8, rejected={"missing_id": 2})
    endpoint = MetricsEndpoint(metrics.registry, "127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{endpoint.port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    finally:
        endpoint.stop()
    assert 'knnstream_backfill_records_total{job="score"} 10.0' in text
    assert 'knnstream_backfill_predictions_total{job="score"} 8.0' in text
    assert 'knnstream_backfill_rejected_total{job="score",reason="missing_id"} 2.0' in text
    assert 'knnstream_backfill_progress_ratio{job="score"} 0.25' in text
    assert 'knnstream_backfill_model_info{job="score",name="blobs",version="v1"} 1.0' in text
