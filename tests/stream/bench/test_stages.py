"""The backlog's seconds per stage: the difference of two scrapes, in the pipeline's order."""

from __future__ import annotations

from stream.bench.stages import stage_seconds_between


def test_stages_read_as_the_time_between_two_scrapes_in_pipeline_order() -> None:
    before = {("driver", "decode"): 1.0, ("worker", "predict"): 2.0}
    after = {
        ("worker", "predict"): 2.5, ("driver", "commit"): 0.25, ("driver", "decode"): 1.125,
        ("worker", "decode"): 0.5,
    }  # fmt: skip
    assert stage_seconds_between(before, after) == (
        "driver/decode=0.125", "driver/commit=0.250", "worker/decode=0.500", "worker/predict=0.500",
    )  # fmt: skip
