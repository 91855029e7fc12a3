"""Ctrl-C and SIGTERM sent for real to a running `xgrid search`: the whole search stops (Tune catching SIGINT
must not move it on to the next target), exit 128 + the signal, one line saying where the results are, every
MLflow run closed (the parent KILLED), results.json with every trial heard, and no half-written stage-1 folder
left in the store."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SPACE = {
    "name": "interrupted",
    "base_models": [{"name": "tiny"}],
    "intermediates": ["none", "mb_chunk"],
    "targets": ["mb_udpos", "mb_xnli"],
    "seeds": [0],
    # The signal goes when a progress line shows a state, and a line prints at most every 5 s: each state the
    # tests wait for must outlast that with margin. Stage 1 (~12 s of compute here: 2000 examples x 6 epochs) and
    # the 6 mb_udpos trials (~3 s each: 300 x 12) are sized so; at 1 epoch of 200 and 3 of 150 a fast CI machine
    # ran all 6 mb_udpos trials between two lines and the Ctrl-C was never sent.
    "intermediate_training": {"learning_rate": 0.003, "epochs": 6, "max_length": 48, "max_train_examples": 2000,
                              "max_eval_examples": 40},
    "target_training": {"learning_rate": {"values": [0.003, 0.01, 0.02]}, "epochs": 12, "max_length": 48,
                        "max_train_examples": 300, "max_eval_examples": 40},
    "search": {"trials_per_cell": 3, "scheduler": "none"},
    "resources": {"max_concurrent_trials": 1},
}


def interrupt_when(folder: Path, pattern: str, sig: int) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run `xgrid search`, send `sig` once a progress line matches `pattern`, wait for the end."""
    (folder / "space.yaml").write_text(yaml.safe_dump(SPACE))
    env = {**os.environ, "COLUMNS": "", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "xgrid.cli", "search", "space.yaml", "--output-dir", "runs"],
                               cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True)
    reader.start()
    sent = False
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if not sent and re.search(pattern, line):
            process.send_signal(sig)
            sent = True
    process.wait(timeout=600)
    reader.join(timeout=60)
    assert sent, "\n".join(lines[-20:]) + "".join(stderr)
    return subprocess.CompletedProcess(process.args, process.returncode, "\n".join(lines), "".join(stderr)), lines


def mlflow_runs(folder: Path):
    client = MlflowClient(f"sqlite:///{folder / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("interrupted")
    return client.search_runs([experiment.experiment_id])


@pytest.mark.slow  # ~40 s: a search, interrupted (CI runs it in the slow step)
def test_ctrl_c_in_stage_2_stops_the_whole_search(tmp_path):
    # once some of the first target's 6 trials are done, and before all are
    result, _ = interrupt_when(tmp_path, r"mb_udpos \(target 1 of 2\): [1-5]/6 trials", signal.SIGINT)
    assert result.returncode == 130, result.stdout[-3000:] + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: interrupted by SIGINT"), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "mb_xnli (target 2 of 2)" not in result.stdout  # did not move on to the next target
    (search_dir,) = (tmp_path / "runs" / "interrupted").iterdir()
    assert f"{search_dir}/results.json" in lines[0]
    trials = json.loads((search_dir / "results.json").read_text())["trials"]
    assert trials and {t["cell"]["target"] for t in trials} == {"mb_udpos"}
    assert any(t["status"] == "completed" for t in trials)
    for trial in trials:  # a trial is completed with its final scores, or it was cut off
        assert trial["status"] in ("completed", "cut_off"), trial["status"]
        if trial["status"] == "completed":
            assert "best.english_dev" in trial["metrics"]
    runs = mlflow_runs(tmp_path)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    (parent,) = [r for r in runs if r.data.tags["stage"] == "search"]
    assert parent.info.status == "KILLED"
    finished = {r.data.tags["trial_id"] for r in runs if r.data.tags["stage"] == "stage2" and r.info.status == "FINISHED"}
    assert finished == {t["trial_id"] for t in trials if t["status"] == "completed"}


@pytest.mark.slow
def test_sigterm_in_stage_1_stops_and_leaves_no_half_written_checkpoint(tmp_path):
    result, _ = interrupt_when(tmp_path, r"stage 1: 0/1 checkpoints .*, 1 running", signal.SIGTERM)
    assert result.returncode == 143, result.stdout[-3000:] + result.stderr
    assert result.stderr.strip().startswith("error: interrupted by SIGTERM") and "Traceback" not in result.stderr
    checkpoints = tmp_path / "runs" / "store" / "checkpoints"
    assert not list(checkpoints.glob(".*")) if checkpoints.exists() else True  # no staging folder left
    runs = mlflow_runs(tmp_path)
    assert {r.info.status for r in runs} == {"KILLED"}  # the parent and the stage-1 run it cut off
