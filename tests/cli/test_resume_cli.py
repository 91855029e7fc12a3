"""`xgrid search --resume`: a real `xgrid search` is killed (SIGKILL of the driver, or Ctrl-C) once results.json has
a finished stage-2 trial, and resumed: every cell ends with exactly `trials_per_cell` finished stage-2 runs in MLflow
(none lost, none twice), nothing RUNNING, the dead driver's runs KILLED saying why, the same parent run FINISHED,
results.json with every trial once, and Optuna studies with no RUNNING trial. Then what --resume refuses."""

from __future__ import annotations

import json
import os
import re
import shlex
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

from xgrid.search.resume import FINISHED, hold_search, update_state
from xgrid.search.studies import JOURNAL, study_file, study_storage

ROOT = Path(__file__).resolve().parents[2]
SPACE = {
    "name": "resumed",
    "base_models": [{"name": "tiny"}],
    "intermediates": ["none", "mb_chunk"],
    "targets": ["mb_udpos", "mb_xnli"],
    "seeds": [0],
    "intermediate_training": {"learning_rate": 0.003, "epochs": 1, "max_length": 48, "max_train_examples": 200,
                              "max_eval_examples": 40},
    "target_training": {"learning_rate": {"values": [0.003, 0.01]}, "epochs": 2, "max_length": 48,
                        "max_train_examples": 150, "max_eval_examples": 40},
    "search": {"trials_per_cell": 2, "scheduler": "none"},
    "resources": {"max_concurrent_trials": 1},
}
TRIALS_PER_CELL = 2
DONE = ("completed", "stopped", "failed")
XGRID = [sys.executable, "-m", "xgrid.cli"]


def env() -> dict[str, str]:
    return {**os.environ, "COLUMNS": "", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def start(folder: Path, args: list[str]) -> subprocess.Popen:
    # Its own session: the test ends the driver's whole process group (its local Ray too), nothing else.
    return subprocess.Popen([*XGRID, *args], cwd=folder, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def finished_trials(folder: Path) -> list[dict]:
    for results in (folder / "runs" / "resumed").glob("*/results.json"):
        try:
            return [t for t in json.loads(results.read_text())["trials"] if t["status"] in DONE]
        except (OSError, ValueError):
            return []  # written atomically, so only a file that is not there yet
    return []


def kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_until_a_trial_finished(folder: Path, sig: int) -> tuple[subprocess.Popen, list[dict], str]:
    """Start a search, send `sig` to the driver (only) once results.json lists a finished stage-2 trial."""
    (folder / "space.yaml").write_text(yaml.safe_dump(SPACE))
    process = start(folder, ["search", "space.yaml", "--output-dir", "runs"])
    deadline = time.monotonic() + 900
    while not finished_trials(folder):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no stage-2 trial finished"
        time.sleep(0.5)
    seen = finished_trials(folder)
    os.kill(process.pid, sig)
    _, stderr = process.communicate(timeout=600)
    return process, seen, stderr


def check_resumed_search(folder: Path, seen: list[dict], killed: bool) -> None:
    (search_dir,) = (folder / "runs" / "resumed").iterdir()
    trials = json.loads((search_dir / "results.json").read_text())["trials"]
    ids = [t["trial_id"] for t in trials]
    assert len(ids) == len(set(ids)), ids  # each trial once
    assert {t["trial_id"] for t in seen} <= set(ids)  # what the first driver finished is kept
    done = [t for t in trials if t["status"] in DONE]
    per_cell = Counter(t["cell"]["cell_id"] for t in done)
    assert len(per_cell) == 4 and set(per_cell.values()) == {TRIALS_PER_CELL}, per_cell
    assert {t["status"] for t in trials} <= set(DONE)  # the rerun trials replaced the cut-off ones

    client = MlflowClient(f"sqlite:///{folder / 'runs' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("resumed").experiment_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    (parent,) = [r for r in runs if r.data.tags["stage"] == "search"]  # the same parent, not a second one
    assert parent.info.status == "FINISHED" and parent.data.tags.get("xgrid.resumes") == "1"
    stage2 = [r for r in runs if r.data.tags["stage"] == "stage2"]
    finished = [r for r in stage2 if r.info.status == "FINISHED"
                or (r.info.status == "KILLED" and r.data.tags.get("trial_status") == "stopped")]
    assert Counter(r.data.tags["cell_id"] for r in finished) == per_cell  # zero lost, zero duplicated
    assert {r.data.tags["trial_id"] for r in finished} == {t["trial_id"] for t in done}
    cut = [r for r in stage2 if r not in finished]
    for run in cut:  # a run of a trial that ran again: closed KILLED, saying by whom
        assert run.info.status == "KILLED" and run.data.tags["trial_status"] == "cut_off"
        if killed:
            assert run.data.tags["xgrid.ended_by"] == "resume: the driver that ran it died"

    assert study_file(search_dir).name == JOURNAL and study_file(search_dir).is_file()
    storage = study_storage(search_dir, read_only=True)
    for target in SPACE["targets"]:
        study = optuna.load_study(study_name=f"resumed.{target}", storage=storage)
        assert not [t for t in study.get_trials() if t.state.name in ("RUNNING", "WAITING")]


def resume(folder: Path, command: list[str]) -> subprocess.CompletedProcess:
    process = start(folder, command)
    try:
        stdout, stderr = process.communicate(timeout=900)
    finally:
        kill_group(process)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.slow
@pytest.mark.integration
def test_a_search_whose_driver_was_sigkilled_resumes_with_nothing_lost_or_run_twice(tmp_path):
    process, seen, _ = run_until_a_trial_finished(tmp_path, signal.SIGKILL)
    try:
        assert process.returncode == -signal.SIGKILL
        client = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
        left = client.search_runs([client.get_experiment_by_name("resumed").experiment_id])
        assert [r for r in left if r.data.tags["stage"] == "search" and r.info.status == "RUNNING"]
        (search_dir,) = (tmp_path / "runs" / "resumed").iterdir()
        result = resume(tmp_path, ["search", "--resume", str(search_dir), "--output-dir", "runs"])
    finally:
        kill_group(process)  # the dead driver's local Ray, still running
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "Traceback" not in result.stderr
    check_resumed_search(tmp_path, seen, killed=True)

    again = resume(tmp_path, ["search", "--resume", str(search_dir), "--output-dir", "runs"])
    assert again.returncode == 0 and "already finished" in again.stdout, again.stdout + again.stderr


@pytest.mark.slow
@pytest.mark.integration
def test_ctrl_c_prints_the_command_that_resumes_and_it_does(tmp_path):
    process, seen, stderr = run_until_a_trial_finished(tmp_path, signal.SIGINT)
    try:
        assert process.returncode == 130, stderr
        (line,) = stderr.strip().splitlines()
        command = shlex.split(re.search(r"continue with: (.*)$", line).group(1))
        assert command[:3] == ["xgrid", "search", "--resume"] and command[4:] == ["--output-dir", "runs"]
        result = resume(tmp_path, command[1:])  # as printed (xgrid is `python -m xgrid.cli` here)
    finally:
        kill_group(process)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    check_resumed_search(tmp_path, seen, killed=False)


# --- what --resume refuses (no Ray: each is one line and exit 2, or exit 0 for a finished search) ------------
def cli(folder: Path, *args: str, monkeypatch=None) -> subprocess.CompletedProcess:
    """In this process (typer's runner), from `folder`: a refusal needs no fresh interpreter."""
    from typer.testing import CliRunner

    from xgrid.cli import app

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        result = CliRunner().invoke(app, ["search", *args])
    finally:
        os.chdir(cwd)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def stopped_search(tmp_path):
    """A search folder as a driver leaves it right after it started (dry-run space, written by hand)."""
    from xgrid.config import parse_space
    from xgrid.planning.plan import build_plan
    from xgrid.search.runner import write_search_files
    from xgrid.tasks import default_registry

    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    registry = default_registry()
    search_dir = tmp_path / "runs" / "resumed" / "20260101-000000-000000"
    search_dir.mkdir(parents=True)
    write_search_files(search_dir, build_plan(parse_space(SPACE, registry), registry))
    update_state(search_dir, status="running")
    return search_dir


def one_error_line(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --resume"), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_resume_refuses_a_space_that_differs_from_the_folders(tmp_path, stopped_search):
    changed = SPACE | {"search": {"trials_per_cell": 3, "scheduler": "none"}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(changed))
    one_error_line(cli(tmp_path, "space.yaml", "--resume", "--output-dir", "runs", "--dry-run"),
                   "differs from the one", str(stopped_search))


def test_resume_finds_the_latest_unfinished_search_of_the_space(tmp_path, stopped_search):
    result = cli(tmp_path, "space.yaml", "--resume", "--output-dir", "runs", "--dry-run")
    assert result.returncode == 0, result.stderr


def test_resume_with_no_unfinished_search(tmp_path, stopped_search):
    update_state(stopped_search, status=FINISHED)
    one_error_line(cli(tmp_path, "space.yaml", "--resume", "--output-dir", "runs"), "no unfinished search",
                   "'resumed'")


def test_resume_of_a_folder_that_is_not_a_search(tmp_path):
    (tmp_path / "empty").mkdir()
    one_error_line(cli(tmp_path, "empty", "--resume"), "not a search folder")


def test_resume_refuses_a_search_a_live_driver_still_runs(tmp_path, stopped_search):
    with hold_search(stopped_search):
        one_error_line(cli(tmp_path, str(stopped_search), "--resume", "--output-dir", "runs"), "still running",
                       f"driver pid {os.getpid()}")


def test_resume_of_a_finished_search_says_so(tmp_path, stopped_search):
    update_state(stopped_search, status=FINISHED)
    result = cli(tmp_path, str(stopped_search), "--resume", "--output-dir", "runs")
    assert result.returncode == 0 and "already finished: nothing to resume" in result.stdout, result.stderr
    assert not result.stderr.strip()
