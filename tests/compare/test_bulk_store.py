"""The MLflow reader's direct SQL path returns what MLflow's search_runs returns, and a search written in bulk by
benchmarks/synthetic_store.py reads back through `xgrid compare` exactly as the same search written through
MLflow's client (so benchmarks/compare_scale.py measures what a real store costs)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from xgrid import tracking_schema as schema
from xgrid.compare.runs import load_runs
from xgrid.tracking.mlflow_reader import MlflowReader, _record, _sql_store, _stage_filter, search_all_runs, sql_stage_runs
from tests.compare.test_runs import _client, _new_run, build_grid_store

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _same_records(a, b) -> bool:
    def metrics_equal(x, y):
        return x.keys() == y.keys() and all((math.isnan(v) and math.isnan(y[k])) or v == y[k] for k, v in x.items())

    return len(a) == len(b) and all(
        (x.run_id, x.status, x.tags, x.params, x.start_time, x.end_time) ==
        (y.run_id, y.status, y.tags, y.params, y.start_time, y.end_time) and metrics_equal(x.metrics, y.metrics)
        for x, y in zip(a, b))


def test_sql_stage_runs_equal_search_runs(tmp_path):
    grid_store = build_grid_store(tmp_path / "grid")  # its own: runs are added and deleted here
    uri = grid_store.uri
    client = _client(uri)
    # Also: a deleted run, a NaN metric, a run without a start time's order tie, another experiment's runs.
    other = client.create_experiment("xgrid-other-sql", artifact_location=(tmp_path / "a").as_uri())
    _new_run(client, other, {schema.STAGE: schema.STAGE2}, {"f1.avg": 1.0})
    exp = grid_store.experiment_id
    gone = _new_run(client, exp, {schema.STAGE: schema.STAGE2, schema.CELL_TAG: "gone"}, {"f1.avg": 2.0})
    client.delete_run(gone)
    nan = _new_run(client, exp, {schema.STAGE: schema.STAGE1, schema.STAGE1_KEY_TAG: "nan"},
                   {"f1": float("nan")}, status="RUNNING")
    reader = MlflowReader(uri)
    store = _sql_store(reader.client)
    assert store is not None
    for stage in (schema.STAGE2, schema.STAGE1, schema.SEARCH_STAGE, schema.RETRIEVAL, "absent"):
        expected = [_record(r) for r in search_all_runs(reader.client, exp, _stage_filter(stage))]
        got = sql_stage_runs(store, exp, stage)
        assert _same_records(expected, got), stage
        assert _same_records(reader.stage_runs(exp, stage), got)
    assert all(r.run_id != gone for r in sql_stage_runs(store, exp, schema.STAGE2))
    (record,) = [r for r in sql_stage_runs(store, exp, schema.STAGE1) if r.run_id == nan]
    assert math.isnan(record.metrics["f1"]) and record.status == "RUNNING"


@pytest.fixture
def synthetic(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import synthetic_store

    yield synthetic_store
    for name in ("synthetic_store", "scale_fakes"):
        sys.modules.pop(name, None)


def _without_ids(df):
    return df.drop(columns=["run_id"]).reset_index(drop=True)


def test_bulk_written_search_reads_back_like_a_client_written_one(synthetic, tmp_path):
    from xgrid.tracking.mlflow_writer import MlflowWriter

    space = synthetic.space_dict("bulk-check", seeds=2, trials_per_cell=2,
                                 intermediates=["none", "mb_ccg", "mb_deprel", "mb_para", "mb_entail"],
                                 targets=["mb_xnli", "mb_udpos"], epochs=3)
    bulk = synthetic.BulkWriter(tmp_path / "bulk.db", "bulk-check", tmp_path)
    n = synthetic.drive_search(bulk, space, tmp_path / "s1")
    bulk.flush()
    real = MlflowWriter(f"sqlite:///{tmp_path / 'real.db'}", "bulk-check")
    assert synthetic.drive_search(real, space, tmp_path / "s1") == n == 2 * 5 * 2 * 2

    a, b = load_runs("bulk-check", bulk.tracking_uri), load_runs("bulk-check", real.tracking_uri)
    assert len(a) > 0 and a.attrs["counts"] == b.attrs["counts"] and a.attrs["counts"]["killed"] > 0
    assert _without_ids(a).equals(_without_ids(b))
    assert a.attrs["metrics"] == b.attrs["metrics"] and a.attrs["search_ids"] == b.attrs["search_ids"]

    # Run by run (matched by trial id, or stage-1 key): the same tags, params and latest metrics, ids aside.
    def runs(uri):
        reader = MlflowReader(uri)
        exp = reader.find_experiment("bulk-check").experiment_id
        out = {}
        for stage in (schema.STAGE2, schema.STAGE1, schema.SEARCH_STAGE):
            for r in reader.stage_runs(exp, stage):
                key = r.tags.get(schema.TRIAL_ID_TAG) or r.tags.get(schema.STAGE1_KEY_TAG) or stage
                tags = {k: v for k, v in r.tags.items() if k != schema.PARENT_TAG and k != "mlflow.user"}
                out[key] = (r.status, tags, r.params, r.metrics)
        return out

    bulk_runs, real_runs = runs(bulk.tracking_uri), runs(real.tracking_uri)
    assert bulk_runs.keys() == real_runs.keys()
    for key in bulk_runs:
        assert bulk_runs[key] == real_runs[key], key
