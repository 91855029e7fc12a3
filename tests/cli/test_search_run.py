"""`xgrid search` run as a batch job would run it: stdout and stderr to pipes (a log file), a real local Ray and
MLflow on SQLite. What the log shows (progress lines, whole tables with the base model, counts that agree, and
commands that run as printed), where the libraries' own lines went (search.log), and that a Ray which cannot
start, or an address where no Ray answers, is one line and leaves nothing behind."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from xgrid.search.studies import JOURNAL

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SPACE = {
    "name": "log-search",
    "base_models": [{"name": "tiny"}],
    "intermediates": ["none", "mb_chunk"],
    "targets": ["mb_udpos", "mb_tatoeba"],
    "seeds": [0],
    "intermediate_training": {"learning_rate": 0.003, "epochs": 1, "max_length": 48, "max_train_examples": 200,
                              "max_eval_examples": 40},
    "target_training": {"learning_rate": {"values": [0.003, 0.01]}, "epochs": 2, "max_length": 48,
                        "max_train_examples": 100, "max_eval_examples": 40},
    "search": {"trials_per_cell": 2, "scheduler": "none"},
    "resources": {"max_concurrent_trials": 2},
}
LIBRARY_LINES = re.compile(r"INFO mlflow|Token authentication is enabled|\[I 20\d\d-|A new study created")


def xgrid(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "xgrid.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=1500)


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    """A printed `xgrid ...` command, run exactly as printed (split like a shell would)."""
    words = shlex.split(command)
    assert words[0] == "xgrid", command
    return xgrid(words[1:], cwd)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("log-search")
    (folder / "space.yaml").write_text(yaml.safe_dump(SPACE))
    result = xgrid(["search", "space.yaml", "--output-dir", "runs"], folder)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (search_dir,) = (folder / "runs" / "log-search").iterdir()
    return folder, search_dir, result


@pytest.mark.slow  # shares one ~90 s search (the module fixture)
def test_the_log_holds_progress_lines_and_whole_tables_with_the_base_model(finished):
    _, search_dir, result = finished
    out = result.stdout
    assert f"search folder: {search_dir} " in out  # whole, on one line
    assert "stage 1: 1/1 checkpoints (1 trained, 0 reused from the store, 0 failed), 0 running, 0 queued" in out
    assert "mb_udpos (target 1 of 2): 4/4 trials (4 completed, 0 stopped early, 0 failed), 0 running, 0 queued" in out
    assert "mb_tatoeba (target 2 of 2): 2/2 evaluations (2 completed" in out
    tables = out.split("best trial per cell", 1)[1]  # the results tables, after the plan's
    header = next(line for line in tables.splitlines() if "intermediate" in line)
    assert header.startswith("┃ base model")
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in tables.splitlines() if line.startswith("│")]
    assert len(rows) == 4 and all(row[0] == "tiny" for row in rows)  # 2 cells x 2 targets, every cell whole
    assert "…" not in out


@pytest.mark.slow  # shares one ~90 s search (the module fixture)
def test_library_log_lines_go_to_the_search_log_not_into_the_progress(finished):
    _, search_dir, result = finished
    assert not LIBRARY_LINES.search(result.stdout), result.stdout
    assert not LIBRARY_LINES.search(result.stderr), result.stderr
    log = (search_dir / "search.log").read_text()
    assert "A new study created" in log  # Optuna's, from stage 2
    assert "mlflow" in log  # the new SQLite store's migration lines


@pytest.mark.slow  # shares one ~90 s search (the module fixture)
def test_the_counts_of_the_summary_agree_with_the_progress_and_mlflow(finished):
    folder, _, result = finished
    out = result.stdout
    assert "stage 1: 1 checkpoints (1 trained, 0 reused from the store)" in out
    assert "stage 2: 4 trials (4 completed, 0 stopped early, 0 failed); retrieval: 2 evaluations (0 failed)" in out
    client = MlflowClient(f"sqlite:///{folder / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("log-search")
    runs = client.search_runs([experiment.experiment_id])
    stages = sorted(r.data.tags["stage"] for r in runs)
    assert stages == ["retrieval"] * 2 + ["search"] + ["stage1"] + ["stage2"] * 4
    selected = [r for r in runs if r.data.tags.get("selected") == "true"]
    assert len(selected) == 4  # one per cell: 2 cells x 2 targets


@pytest.mark.slow  # shares one ~90 s search (the module fixture)
def test_the_printed_commands_run_as_printed(finished):
    folder, search_dir, result = finished
    lines = result.stdout.splitlines()
    status = next(line.split("status: ", 1)[1] for line in lines if line.strip().startswith("status: xgrid"))
    ran = shell(status, folder)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "mb_udpos" in ran.stdout
    compare = next(line.split("compare: ", 1)[1] for line in lines if line.strip().startswith("compare: xgrid"))
    assert "--tracking-uri sqlite:///" in compare  # works from any folder, not only where the search ran
    ui = next(line for line in lines if line.strip().startswith("UI: "))
    assert "mlflow ui --backend-store-uri sqlite:///" in ui
    dashboard = next(line.split("Optuna studies: ", 1)[1] for line in lines if "Optuna studies: " in line)
    words = shlex.split(dashboard)
    assert words == ["optuna-dashboard", str(search_dir.absolute() / JOURNAL)]  # a journal file, as a plain path
    import optuna
    from optuna_dashboard._storage_url import get_storage

    # what optuna-dashboard opens for that argument holds the study and its trials
    study = optuna.load_study(study_name="log-search.mb_udpos", storage=get_storage(words[1]))
    assert len(study.trials) == 4


def one_line(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_ray_that_cannot_start_is_one_line_and_leaves_nothing_behind(tmp_path):
    # a real start-up failure: Ray's temp folder is a file, so Ray cannot make its session folder
    (tmp_path / "not-a-folder").write_text("")
    result = xgrid(["search", "--output-dir", "runs"], tmp_path, env={"RAY_TMPDIR": str(tmp_path / "not-a-folder")})
    one_line(result, "Ray did not start locally", "Not a directory")
    assert not (tmp_path / "runs").exists()  # no search folder, no MLflow store or experiment


def test_an_address_where_no_ray_answers_is_refused_at_once(tmp_path):
    result = xgrid(["search", "--output-dir", "runs", "--address", "127.0.0.1:9"], tmp_path)
    one_line(result, "--address 127.0.0.1:9", "no Ray head answers there", "ray start --head")
    assert not (tmp_path / "runs").exists()
