"""``knnstream score`` on real files: a multi-file Parquet glob, a CSV with a header, the CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from distributed import Client

from model_store import ModelStore
from stream.backend import Backend
from stream.backfill.progress import BackfillMetrics, metrics_text
from stream.backfill.score import run_score
from stream.backfill.settings import ScoreSettings
from stream.cli.backfill import add_backfill_parsers
from stream.errors import ConfigurationError
from stream.predict.model import MODEL_FILE, KnnIndex, build_predictor
from stream.records.encode import class_key
from tests.helpers import blobs
from tests.stream.backfill.conftest import Trained

FEATURES = [f"f{i}" for i in range(6)]


def _records(rows: int, seed: int, prefix: str) -> pd.DataFrame:
    features, _ = blobs(rows, seed=seed)
    frame = pd.DataFrame(features, columns=FEATURES)
    frame.insert(0, "id", [f"{prefix}{i}" for i in range(rows)])
    return frame


def _expected(trained: Trained, frame: pd.DataFrame) -> pd.DataFrame:
    """Predictions of the stored model, computed here without Dask."""
    index = KnnIndex.from_npz(ModelStore(trained.store).load(trained.ref).files[MODEL_FILE])
    predictions, distances = build_predictor(index, "cpu").predict_host(frame[FEATURES].to_numpy(np.float32))
    return pd.DataFrame({"prediction": predictions, "distance": distances}, index=frame["id"].astype(str))


def _check_predictions(trained: Trained, output: pd.DataFrame, inputs: pd.DataFrame) -> None:
    expected = _expected(trained, inputs).loc[output["id"]]
    assert output["prediction"].tolist() == expected["prediction"].tolist()
    np.testing.assert_allclose(output["distance"], expected["distance"], rtol=1e-4, atol=1e-4)  # float32 on GPU
    assert set(output["model_version"]) == {trained.manifest.version}


def test_a_glob_of_parquet_files_is_scored_one_part_per_input_partition(
    tmp_path: Path, trained: Trained, dask_client: Client, backend: Backend
) -> None:
    inputs = [_records(rows, seed, f"p{n}-") for n, (rows, seed) in enumerate([(120, 1), (75, 2), (200, 3)])]
    inputs[1].loc[4, "f2"] = np.nan  # a missing feature: left out and counted
    inputs[2].loc[7, "id"] = None  # a missing id: left out and counted
    for n, frame in enumerate(inputs):
        frame.to_parquet(tmp_path / f"features-{n}.parquet")
    inputs[0].iloc[:0].to_parquet(tmp_path / "features-3.parquet")  # an empty file: an empty part
    metrics = BackfillMetrics()
    settings = ScoreSettings(
        data=str(tmp_path / "features-*.parquet"),
        model="blobs@production",
        store=trained.store,
        output=str(tmp_path / "scored"),
        backend=backend,
    )
    report = run_score(settings, dask_client, metrics)

    parts = sorted(path.name for path in (tmp_path / "scored").iterdir())
    assert parts == ["part.0.parquet", "part.1.parquet", "part.2.parquet", "part.3.parquet"]
    output = pd.read_parquet(tmp_path / "scored")
    assert list(output.columns) == ["id", "prediction", "model_version", "distance"]
    everything = pd.concat(inputs, ignore_index=True)
    scorable = everything.drop(index=[120 + 4, 120 + 75 + 7])
    assert sorted(output["id"]) == sorted(scorable["id"])
    _check_predictions(trained, output, scorable)
    assert (report.parts, report.records, report.predicted) == (4, 395, 393)
    assert report.rejected == {"missing_or_non_finite": 1, "missing_id": 1}
    assert report.version == trained.manifest.version
    text = metrics_text(metrics)
    assert 'knnstream_backfill_records_total{job="score"} 395.0' in text
    assert 'knnstream_backfill_predictions_total{job="score"} 393.0' in text
    assert 'knnstream_backfill_rejected_total{job="score",reason="missing_id"} 1.0' in text
    assert 'knnstream_backfill_progress_ratio{job="score"} 1.0' in text


def test_a_csv_with_a_header_is_scored_by_column_name(
    tmp_path: Path, trained: Trained, dask_client: Client, backend: Backend
) -> None:
    frame = _records(150, 4, "")
    frame["id"] = [f"{i:05d}" for i in range(150)]  # text ids keep their leading zeros
    frame["f3"] = frame["f3"].round()  # a column of whole numbers is still a feature
    frame["note"] = "extra column, ignored"
    frame[["note", "f5", "f4", "id", "f3", "f2", "f1", "f0"]].to_csv(tmp_path / "features.csv", index=False)
    settings = ScoreSettings(
        data=str(tmp_path / "features.csv"),
        model=trained.ref,
        store=trained.store,
        output=str(tmp_path / "scored"),
        backend=backend,
    )
    report = run_score(settings, dask_client)
    output = pd.read_parquet(tmp_path / "scored")
    assert sorted(output["id"]) == sorted(frame["id"])
    assert output["id"].iloc[0].startswith("0000")
    _check_predictions(trained, output, frame)
    assert (report.records, report.predicted, report.rejected) == (150, 150, {})


@pytest.mark.parametrize("backend", ["cpu"])
def test_missing_feature_columns_and_a_used_output_fail_before_any_work(
    tmp_path: Path, trained: Trained, dask_client: Client
) -> None:
    frame = _records(10, 5, "r")
    frame.drop(columns=["f1", "f4"]).to_parquet(tmp_path / "narrow.parquet")
    frame.to_parquet(tmp_path / "full.parquet")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "old.parquet").write_bytes(b"old")

    def score(data: str, output: str, id_column: str = "id", overwrite: bool = False) -> None:
        settings = ScoreSettings(
            data=data,
            model="blobs@production",
            store=trained.store,
            output=output,
            id_column=id_column,
            overwrite=overwrite,
        )
        run_score(settings, dask_client)

    with pytest.raises(ConfigurationError, match=r"feature column\(s\) f1, f4 are not in the data"):
        score(str(tmp_path / "narrow.parquet"), str(tmp_path / "out1"))
    with pytest.raises(ConfigurationError, match="id column 'key' is not in the data"):
        score(str(tmp_path / "full.parquet"), str(tmp_path / "out2"), id_column="key")
    with pytest.raises(ConfigurationError, match="already holds files; pass --overwrite"):
        score(str(tmp_path / "full.parquet"), str(tmp_path / "used"))
    assert not (tmp_path / "out1").exists() and not (tmp_path / "out2").exists()
    score(str(tmp_path / "full.parquet"), str(tmp_path / "used"), overwrite=True)
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == ["part.0.parquet"]


@pytest.mark.parametrize("backend", ["cpu"])
def test_the_score_command_prints_a_report(
    tmp_path: Path, trained: Trained, dask_client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    _records(30, 6, "c").to_parquet(tmp_path / "in.parquet")
    parser = argparse.ArgumentParser(prog="knnstream")
    add_backfill_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "score",
            "--data",
            str(tmp_path / "in.parquet"),
            "--model",
            "blobs@production",
            "--store",
            trained.store,
            "--output",
            str(tmp_path / "out"),
            "--scheduler",
            dask_client.scheduler.address,
            "--backend",
            "cpu",
            "--progress",
            "always",
        ]
    )
    assert args.handler(args) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["records"] == report["predicted"] == 30
    assert report["version"] == trained.manifest.version
    assert "\rscore: 1/1 parts (100.0%), 30 predicted" in captured.err
    assert len(pd.read_parquet(tmp_path / "out")) == 30


def test_probabilities_are_written_as_json_objects_equal_to_predict_proba(
    tmp_path: Path, trained: Trained, dask_client: Client, backend: Backend
) -> None:
    frame = _records(180, 6, "q")
    frame.to_parquet(tmp_path / "features.parquet")
    settings = ScoreSettings(
        data=str(tmp_path / "features.parquet"),
        model=trained.ref,
        store=trained.store,
        output=str(tmp_path / "scored"),
        backend=backend,
        probabilities=True,
    )
    run_score(settings, dask_client)
    output = pd.read_parquet(tmp_path / "scored")
    assert list(output.columns) == ["id", "prediction", "model_version", "distance", "probabilities"]
    _check_predictions(trained, output, frame)
    index = KnnIndex.from_npz(ModelStore(trained.store).load(trained.ref).files[MODEL_FILE])
    rows = frame.set_index("id").loc[output["id"], FEATURES].to_numpy(np.float32)
    _, _, expected = build_predictor(index, "cpu").predict_proba_host(rows)
    served = [json.loads(text) for text in output["probabilities"]]
    assert all(list(shares) == [class_key(label) for label in index.classes] for shares in served)
    np.testing.assert_allclose([list(shares.values()) for shares in served], expected, rtol=0, atol=1e-6)
