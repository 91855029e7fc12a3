"""A budgeted search as a user runs it (real Ray, real MLflow on SQLite): the shipped `microbench-budget` decides
both planted targets with the right sign and spends at most half the fixed design's stage-2 trials; every run
carries its round, the parent run each round's decisions, and `xgrid compare` shows them. Then a budgeted search
whose driver is SIGKILLed after its first round resumes without running that round again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient

from xgrid.search.studies import JOURNAL, study_file, study_storage

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
XGRID = [sys.executable, "-m", "xgrid.cli"]


def env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def xgrid(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([*XGRID, *args], cwd=cwd, capture_output=True, text=True, timeout=1500, env=env())


def test_the_budgeted_micro_benchmark_decides_both_planted_targets_for_half_the_trials(tmp_path):
    result = xgrid("search", "microbench-budget", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "round 1: mb_udpos at 2 seed(s)" in result.stdout and "syntactic higher" in result.stdout
    (search_dir,) = (tmp_path / "xgrid_runs" / "microbench-budget").iterdir()
    rounds = json.loads((search_dir / "rounds.json").read_text())
    first = {d["target"]: d for d in rounds["rounds"][0]["decisions"]}
    assert first["mb_udpos"]["status"] == "syntactic higher" and first["mb_udpos"]["low"] > 0
    assert first["mb_xnli"]["status"] == "semantic higher" and first["mb_xnli"]["high"] < 0
    assert rounds["spent"]["stage2_trials"] <= rounds["fixed"]["stage2_trials"] / 2, rounds
    assert "spent:" in result.stdout and "of 72 stage2 trials" in result.stdout

    uri = f"sqlite:///{tmp_path / 'xgrid_runs' / 'mlflow.db'}"
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("microbench-budget").experiment_id],
                              max_results=5000)
    children = [r for r in runs if r.data.tags["stage"] != "search"]
    assert children and all(r.data.tags.get("round") in {"1", "2"} for r in children)
    assert Counter(r.data.tags["round"] for r in children if r.data.tags["stage"] == "stage2") == {"1": 36}
    (parent,) = [r for r in runs if r.data.tags["stage"] == "search"]
    assert parent.data.tags["budget.mb_udpos.status"] == "syntactic higher"
    assert parent.data.tags["budget.mb_udpos.round"] == "1" and "pocock" in parent.data.tags["budget.method"]
    history = client.get_metric_history(parent.info.run_id, "budget.mb_tatoeba.high")
    assert [m.step for m in history] == [1, 2]  # tatoeba looked at in both rounds

    compared = xgrid("compare", "microbench-budget", "--tracking-uri", uri, cwd=tmp_path)
    assert compared.returncode == 0, compared.stdout[-3000:] + compared.stderr[-3000:]
    assert "budget rounds of search" in compared.stdout
    assert "answer budgeted search" in compared.stdout and "mb_udpos: syntactic higher (round 1)" in compared.stdout
    assert "stage-2 trials 50%" in compared.stdout


SMALL = {
    "name": "budget-resumed",
    "base_models": [{"name": "tiny"}],
    "intermediates": ["none", "mb_xpos", "mb_deprel", "mb_para", "mb_entail"],
    "targets": ["mb_udpos"],
    "seeds": [0],
    "intermediate_training": {"learning_rate": 0.003, "epochs": 1, "max_length": 48, "max_train_examples": 150,
                              "max_eval_examples": 40},
    "target_training": {"learning_rate": 0.003, "epochs": 1, "max_length": 48, "max_train_examples": 100,
                        "max_eval_examples": 40},
    "search": {"scheduler": "none"},
    "resources": {"max_concurrent_trials": 1},
    # A level no small grid reaches, and a half-width no interval gets under: round 2 always runs.
    "budget": {"alpha": 1e-9, "half_width": 0.001, "max_seeds": 2},
}


def test_a_budgeted_search_killed_after_its_first_round_resumes_without_running_it_again(tmp_path):
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SMALL))
    process = subprocess.Popen([*XGRID, "search", "space.yaml", "--output-dir", "runs"], cwd=tmp_path, env=env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 900
        while not list((tmp_path / "runs" / "budget-resumed").glob("*/rounds.json")):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "round 1 never finished"
            time.sleep(0.2)
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=600)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # its local Ray
        except ProcessLookupError:
            pass
    (search_dir,) = (tmp_path / "runs" / "budget-resumed").iterdir()
    before = json.loads((search_dir / "results.json").read_text())["trials"]
    round1 = {t["trial_id"] for t in before if t["cell"]["seed"] == "0" and t["status"] == "completed"}
    assert len(round1) == 5  # 5 intermediates x seed 0, each one trial

    resumed = xgrid("search", "--resume", str(search_dir), "--output-dir", "runs", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "round 1: finished by an earlier driver of this search (not run again)" in resumed.stdout
    trials = json.loads((search_dir / "results.json").read_text())["trials"]
    by_seed = Counter(t["cell"]["seed"] for t in trials if t["status"] == "completed")
    assert by_seed == {"0": 5, "1": 5}  # round 1 once, round 2 complete
    assert round1 <= {t["trial_id"] for t in trials}
    assert study_file(search_dir).name == JOURNAL  # the resumed driver kept the search's own storage
    storage = study_storage(search_dir, read_only=True)
    assert len(optuna.load_study(study_name="budget-resumed.mb_udpos", storage=storage).get_trials()) == 5
    rounds = json.loads((search_dir / "rounds.json").read_text())
    assert [r["round"] for r in rounds["rounds"]] == [1, 2] and rounds["stopped_by"] == "max_seeds"
