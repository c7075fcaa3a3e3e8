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


@pytest.mark.gpu
def test_a_real_gpu_out_of_memory_is_split_and_matches_the_cpu(caplog: pytest.LogCaptureFixture) -> None:
    """A batch runs out of device memory for real and is predicted in smaller pieces.

    cuML's brute-force search works in tiles of at most 1,024 query rows, so its own memory does
    not grow with the batch; the vote's counts (rows x classes) do. With 2,000 classes and RMM
    (which CuPy allocates through) capped at 200 MiB of new allocations, a 65,536-row piece needs
    500 MiB of counts and a 16,384-row one 125 MiB.
    """
    import cupy
    import rmm
    import rmm.allocators.cupy

    from stream.predict.model import build_predictor, index_from_training_data

    rng = np.random.default_rng(0)
    features = rng.normal(size=(20_000, 32)).astype(np.float32)
    index = index_from_training_data("classification", 5, "euclidean", features, np.arange(20_000) % 2_000)
    queries = rng.normal(size=(100_000, 32)).astype(np.float32)
    gpu = build_predictor(index, "gpu")
    on_device = cupy.asarray(queries)
    upstream = rmm.mr.get_current_device_resource()  # CuPy allocates through RMM once cuDF is imported
    allocator = cupy.cuda.get_allocator()
    rmm.mr.set_current_device_resource(rmm.mr.LimitingResourceAdaptor(upstream, 200 * 2**20))
    cupy.cuda.set_allocator(rmm.allocators.cupy.rmm_cupy_allocator)
    try:
        with caplog.at_level("WARNING", logger="stream.predict.memory"):
            labels = gpu.predict(on_device)["prediction"].to_numpy()
    finally:
        rmm.mr.set_current_device_resource(upstream)
        cupy.cuda.set_allocator(allocator)
    splits = [record.getMessage() for record in caplog.records if "GPU out of memory" in record.getMessage()]
    print("\n".join(splits))
    assert splits, "nothing ran out of memory: nothing was split"
    expected, _ = build_predictor(index, "cpu").predict_host(queries)
    assert len(labels) == len(queries)
    assert (labels == expected).mean() > 0.999  # ties at float32 precision aside
