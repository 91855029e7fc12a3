"""The one stage-1 writer: whichever path trains a checkpoint, its key holds the same files, and a writer that
fails leaves nothing behind (no checkpoint, no staging folder)."""

import json

import pytest

from xgrid.config import parse_space
from xgrid.nodes import node_name
from xgrid.planning.plan import build_plan
from xgrid.running.local import ensure_stage1
from xgrid.running.requests import stage1_request
from xgrid.running.stage1_writer import read_summary, train_checkpoint
from xgrid.running.store import MANIFEST, MARKER, CheckpointStore
from xgrid.training.context import LocalContext
from xgrid.training.phase import SUMMARY_FILE
from tests.faults import flip_middle_byte

SMALL = {"learning_rate": 0.003, "epochs": 1, "max_length": 48, "max_train_examples": 60, "max_eval_examples": 20}


def job_for(registry, intermediate, **training):
    space = parse_space({"name": "w", "base_models": [{"name": "tiny"}], "intermediates": [intermediate],
                         "targets": ["mb_udpos"], "seeds": [0], "intermediate_training": SMALL | training,
                         "target_training": {"learning_rate": 0.001}}, registry)
    (job,) = build_plan(space, registry).trained_jobs
    return space, job


def test_the_local_runner_commits_weights_and_the_training_record(registry, tmp_path):
    space, job = job_for(registry, "mb_chunk")
    store = CheckpointStore(tmp_path)
    outcome = ensure_stage1(job, space, store)
    folder = store.fetch(job.key)
    assert outcome.trained and outcome.encoder == str(folder)
    assert {SUMMARY_FILE, MARKER, MANIFEST, "model.safetensors", "config.json"} <= {p.name for p in folder.iterdir()}
    # The training record is checksummed with the weights: everything the writer put there is in the manifest.
    assert set(json.loads((folder / MANIFEST).read_text())["files"]) == {
        p.name for p in folder.iterdir() if p.name not in (MARKER, MANIFEST)}
    summary = read_summary(folder)
    # The phase's own record, and the node that trained it (tagged on its MLflow run).
    assert summary == json.loads(json.dumps(outcome.result.summary())) | {"node": node_name()}
    assert [h["epoch"] for h in summary["history"]] == [1]
    assert not ensure_stage1(job, space, store).trained  # found under its key the second time


def test_a_failing_writer_leaves_no_checkpoint_and_no_staging_folder(registry, tmp_path, tiny_model):
    space, job = job_for(registry, "mb_qa", max_length=12)  # QA questions leave no room for the context
    store = CheckpointStore(tmp_path)
    with pytest.raises(ValueError, match="leaves no room for the context"):
        train_checkpoint(stage1_request(job, space, tiny_model), job.key, store, LocalContext())
    assert not store.has(job.key)
    assert list((tmp_path / "checkpoints").iterdir()) == []


def test_the_local_runner_retrains_a_corrupt_checkpoint_instead_of_loading_it(registry, tmp_path, capsys):
    space, job = job_for(registry, "mb_chunk")
    store = CheckpointStore(tmp_path)
    ensure_stage1(job, space, store)
    flip_middle_byte(store.fetch(job.key) / "model.safetensors")
    outcome = ensure_stage1(job, space, CheckpointStore(tmp_path))  # a new process would see the same
    assert outcome.trained
    assert "model.safetensors" in capsys.readouterr().err
    assert list((tmp_path / "quarantine").iterdir())
    assert not ensure_stage1(job, space, CheckpointStore(tmp_path)).trained  # the retrained copy verifies
