"""The MLflow writer and reader against a real SQLite store: what each interface method does there."""

from __future__ import annotations

import time

import pytest
from mlflow import MlflowClient

from xgrid import tracking_schema as schema
from xgrid.tracking import NotFoundError, QueuedWriter, RunRecord, TrackingError, open_reader, open_writer
from xgrid.tracking import mlflow_reader
from xgrid.tracking.mlflow_reader import MlflowReader
from xgrid.tracking.mlflow_writer import MlflowWriter


@pytest.fixture
def uri(tmp_path):
    return f"sqlite:///{tmp_path / 'db' / 'mlflow.db'}"


@pytest.fixture
def writer(uri, tmp_path):
    """MLflow's writer itself (open_writer's queue around it is tested in test_queued.py)."""
    (tmp_path / "db").mkdir()
    return open_writer(uri, "exp").inner


def test_the_table_picks_mlflow_for_every_uri(writer, uri):
    queued = open_writer(uri, "exp")
    assert isinstance(queued, QueuedWriter) and isinstance(queued.inner, MlflowWriter)
    assert isinstance(writer, MlflowWriter) and isinstance(open_reader(uri), MlflowReader)


def test_experiment_is_created_once_with_artifacts_beside_the_store(writer, uri, tmp_path):
    assert open_writer(uri, "exp").experiment_id == writer.experiment_id
    location = MlflowClient(uri).get_experiment(writer.experiment_id).artifact_location
    assert location == (tmp_path / "db" / "mlartifacts" / "exp").as_uri()
    assert writer.tracking_uri == uri


def test_written_runs_read_back_as_records(writer, uri, tmp_path):
    run_id = writer.create_run("trial", {schema.STAGE: schema.STAGE2, "target": "t"})
    writer.log_metrics(run_id, {"select.english_dev": 1.0}, step=1)
    writer.log_metrics(run_id, {"select.english_dev": 2.0}, step=2)
    writer.log_params(run_id, {schema.LEARNING_RATE: "0.001"})
    writer.set_tags(run_id, {schema.STATUS_TAG: "completed"})
    (tmp_path / "a.txt").write_text("a")
    writer.log_artifact(run_id, tmp_path / "a.txt", "compare")
    writer.end_run(run_id, "FINISHED")
    writer.create_run("stage1", {schema.STAGE: schema.STAGE1})

    reader = open_reader(uri)
    (record,) = reader.stage_runs(writer.experiment_id, schema.STAGE2)
    assert isinstance(record, RunRecord) and record.run_id == run_id and record.status == "FINISHED"
    assert record.metrics == {"select.english_dev": 2.0} and record.params == {schema.LEARNING_RATE: "0.001"}
    assert record.tags["target"] == "t" and record.tags[schema.STATUS_TAG] == "completed"
    client = MlflowClient(uri)
    assert [m.step for m in client.get_metric_history(run_id, "select.english_dev")] == [1, 2]
    assert [a.path for a in client.list_artifacts(run_id, "compare")] == ["compare/a.txt"]
    assert client.get_run(run_id).info.run_name == "trial"


def test_stage_runs_reads_every_page(writer, uri, monkeypatch):
    ids = {writer.create_run(f"r{i}", {schema.STAGE: schema.RETRIEVAL}) for i in range(5)}
    monkeypatch.setattr(mlflow_reader, "_PAGE", 2)
    assert {r.run_id for r in open_reader(uri).stage_runs(writer.experiment_id, schema.RETRIEVAL)} == ids


def test_parent_run_is_the_most_recent_search_run(writer, uri):
    reader = open_reader(uri)
    assert reader.find_parent_run(writer.experiment_id) is None
    writer.create_run("search-1", {schema.STAGE: schema.SEARCH_STAGE})
    time.sleep(0.01)  # start times are in milliseconds
    newest = writer.create_run("search-2", {schema.STAGE: schema.SEARCH_STAGE})
    assert reader.find_parent_run(writer.experiment_id) == newest


def test_experiments_by_name_or_id_and_did_you_mean(writer, uri):
    reader = open_reader(uri)
    assert reader.find_experiment("exp").experiment_id == writer.experiment_id
    assert reader.find_experiment(writer.experiment_id).name == "exp"
    with pytest.raises(NotFoundError, match="no MLflow experiment 'epx'; did you mean 'exp'"):
        reader.find_experiment("epx")
    MlflowClient(uri).delete_experiment(writer.experiment_id)
    with pytest.raises(NotFoundError, match="is deleted"):
        reader.find_experiment("exp")


def test_a_missing_store_is_not_created(tmp_path):
    db = tmp_path / "nowhere" / "mlflow.db"
    with pytest.raises(NotFoundError, match="no MLflow store"):
        open_reader(f"sqlite:///{db}")
    assert not db.exists()


def test_mlflow_errors_become_tracking_errors(writer):
    run_id = writer.create_run("r", {})
    writer.log_params(run_id, {"a": "1"})
    with pytest.raises(TrackingError) as info:
        writer.log_params(run_id, {"a": "2"})  # MLflow refuses to change a param
    assert "\n" not in str(info.value) and not isinstance(info.value, NotFoundError)


def test_a_server_that_does_not_answer_is_unreachable_and_a_refusal_is_not(writer):
    import socket

    from xgrid.tracking import UnreachableError

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UnreachableError, match="Connection refused"):
        MlflowWriter(f"http://127.0.0.1:{port}", "exp")  # MLflow's own retries are off: fails at once, not in minutes
    run_id = writer.create_run("r", {})
    writer.log_params(run_id, {"a": "1"})
    with pytest.raises(TrackingError) as info:
        writer.log_params(run_id, {"a": "2"})
    assert not isinstance(info.value, UnreachableError)  # the queue records it as refused and goes on
