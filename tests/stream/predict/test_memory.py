import numpy as np
import pytest

from stream.predict.memory import DeviceMemoryError, check_fits, predict_in_pieces, required_bytes


def test_a_model_too_large_for_the_free_memory_is_refused_with_the_figures() -> None:
    needed = required_bytes(1_000_000, 32, 50_000, 5)
    check_fits(1_000_000, 32, 50_000, 5, free_bytes=needed)
    with pytest.raises(DeviceMemoryError, match=r"1,000,000 x 32.*50,000 rows needs .* GiB"):
        check_fits(1_000_000, 32, 50_000, 5, free_bytes=needed - 1)


def test_a_batch_that_runs_out_of_memory_is_split_and_still_complete() -> None:
    calls: list[int] = []

    def predict(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        if len(rows) > 1000:
            raise MemoryError("std::bad_alloc: out of memory")
        return rows * 2

    rows = np.arange(5000)
    result = predict_in_pieces(predict, rows, np.concatenate, max_rows=4096)
    np.testing.assert_array_equal(result, rows * 2)
    assert calls[:3] == [4096, 2048, 1024] and max(calls[3:]) <= 1024


def test_other_errors_are_not_swallowed() -> None:
    def predict(rows: np.ndarray) -> np.ndarray:
        raise RuntimeError("invalid argument")

    with pytest.raises(RuntimeError, match="invalid argument"):
        predict_in_pieces(predict, np.arange(10), np.concatenate, max_rows=4)
