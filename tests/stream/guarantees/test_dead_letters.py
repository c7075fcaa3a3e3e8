"""Promise 8, to the record: every poison pill goes to the dead-letter topic once, with headers
naming its topic, partition, offset, error class and message; the dead-letter topic holds
exactly the injected records (read to its end), and every good record is predicted once.

test_poison_pills.py covers one pill of each kind and the circuit breaker; this places several
of each kind (NaN, infinity and a tombstone included) and checks each letter against the
position its record was written at.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import pytest

from model_store import Manifest
from tests.helpers import N_FEATURES, blobs
from tests.stream.guarantees.reading import GroupOffsets, prediction_ids, read_topic, tally
from tests.stream.guarantees.scenario import report
from tests.stream.guarantees.topics import Topics, produce, record_value
from tests.stream.guarantees.workers import Workers

pytestmark = pytest.mark.kafka

MAX_RECORD_BYTES = 2_000
ROW = ", ".join(["1.5"] * (N_FEATURES - 1))
POISON: dict[str, tuple[bytes | None, str]] = {  # kind → (value, reason expected in the header)
    "invalid JSON": (b'{"id": "broken", "features": [1, 2', "invalid_json"),
    "wrong feature count": (json.dumps({"id": "short", "features": [1.0, 2.0]}).encode(), "wrong_feature_count"),
    "NaN": (f'{{"id": "nan", "features": [NaN, {ROW}]}}'.encode(), "non_finite"),
    "infinity": (f'{{"id": "inf", "features": [-Infinity, {ROW}]}}'.encode(), "non_finite"),
    "overflow to infinity": (f'{{"id": "huge", "features": [1e999, {ROW}]}}'.encode(), "non_finite"),
    "empty value": (b"", "empty_value"),
    "tombstone": (None, "empty_value"),
    "oversized": (record_value("big", [0.0] * N_FEATURES, padding=3 * MAX_RECORD_BYTES), "oversized"),
}
COPIES = 3  # of each kind
GOOD = 3_000


def _stream() -> tuple[list[tuple[bytes | None, bytes | None]], list[str | None]]:
    """Good records with the pills spread among them; per item, the pill's kind or None."""
    features, _ = blobs(GOOD, seed=21)
    items: list[tuple[bytes | None, bytes | None]] = []
    kinds: list[str | None] = []
    pills = [kind for _ in range(COPIES) for kind in POISON]
    every = GOOD // len(pills)
    for number, row in enumerate(features.tolist()):
        record_id = f"good-{number}"
        items.append((record_id.encode(), record_value(record_id, row)))
        kinds.append(None)
        if number % every == every // 2 and pills:
            kind = pills.pop()
            items.append((f"pill-{len(items)}".encode(), POISON[kind][0]))
            kinds.append(kind)
    assert not pills
    return items, kinds


def test_every_poison_pill_is_dead_lettered_once_with_its_origin(
    kafka_bootstrap: str,
    topics: Callable[[int], Topics],
    group_id: str,
    tmp_store: str,
    model: Manifest,
    record_property: Callable[[str, object], None],
) -> None:
    names = topics(3)
    items, kinds = _stream()
    positions = produce(kafka_bootstrap, names.input, items)
    pills = {
        position: (kind, items[number])
        for number, (position, kind) in enumerate(zip(positions, kinds, strict=True))
        if kind
    }
    good_ids = [key.decode() for (key, _), kind in zip(items, kinds, strict=True) if kind is None and key]
    offsets = GroupOffsets(kafka_bootstrap, group_id, names.input, 3)
    try:
        with Workers(kafka_bootstrap, names, group_id, tmp_store, 300) as workers:
            worker = workers.start("w", f"--max-record-bytes={MAX_RECORD_BYTES}")
            offsets.wait_for(len(items), [worker])
            counted = worker.metric_lines("knnstream_records_dead_lettered_total{")
            code, _ = worker.terminate(timeout_s=30)
    finally:
        offsets.close()
    letters = read_topic(kafka_bootstrap, names.dlq)
    result = tally(good_ids, prediction_ids(read_topic(kafka_bootstrap, names.output)))
    problems = []
    seen: Counter[tuple[int, int]] = Counter()
    for letter in letters:
        headers = {name: value.decode() for name, value in letter.headers() or []}
        origin = (int(headers["knnstream.source.partition"]), int(headers["knnstream.source.offset"]))
        seen[origin] += 1
        if origin not in pills:
            problems.append(f"a letter for {origin}, which is no pill")
            continue
        kind, (key, value) = pills[origin]
        expected_value = (value or b"")[:MAX_RECORD_BYTES]
        checks = {
            "source topic": headers["knnstream.source.topic"] == names.input,
            "reason": headers["knnstream.error.reason"] == POISON[kind][1],
            "error class": headers["knnstream.error.class"] == "RecordError",
            "error message": bool(headers["knnstream.error.message"]),
            "key": letter.key() == key,
            "value": (letter.value() or b"") == expected_value,
            "truncation mark": (headers.get("knnstream.value.truncated") == "true") == (kind == "oversized"),
        }
        problems += [f"{kind} at {origin}: wrong {name}" for name, ok in checks.items() if not ok]
    problems += [f"{pills[origin][0]} at {origin}: never dead-lettered" for origin in pills if origin not in seen]
    problems += [f"{origin} dead-lettered {n} times" for origin, n in seen.items() if n > 1]
    by_reason = Counter(POISON[kind][1] for kind, _ in pills.values())
    report(
        record_property,
        "dead letters",
        good=len(good_ids),
        injected=len(pills),
        dead_lettered=len(letters),
        by_reason=dict(sorted(by_reason.items())),
        metric_total=int(sum(counted.values())),
        lost=result.lost,
        duplicated=result.duplicated,
    )
    assert code == 0
    assert not problems, problems[:10]
    assert len(letters) == len(pills), "the dead-letter topic holds exactly the injected records"
    assert sum(counted.values()) == len(pills)
    assert result.lost == 0 and result.duplicated == 0
