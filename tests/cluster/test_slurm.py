"""cluster/slurm/xgrid.sbatch submitted for real to a two-node SLURM running on this machine (tests/cluster/slurm.py:
Debian's slurm-wlm, one slurmd per node, 1 CPU each): the script starts a Ray head on the first node and a worker on
the second with srun, the xgrid driver searches on both, and the job ends with the Ray nodes stopped. SIGTERM to
the batch script (`scancel --batch --signal=TERM`, and SLURM's own `--signal=B:TERM@...` before a time limit)
reaches the driver, which leaves a search that a second job continues to the end."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.cluster import slurm

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "cluster" / "slurm" / "xgrid.sbatch"

SMALL = {  # 2 cells x 2 trials, two at a time: one on each node (each has one CPU)
    "name": "slurm-small",
    "base_models": [{"name": "tiny"}],
    "intermediates": ["none", "mb_chunk"],
    "targets": ["mb_udpos"],
    "seeds": [0],
    "intermediate_training": {"learning_rate": 0.003, "epochs": 1, "max_length": 48, "max_train_examples": 200,
                              "max_eval_examples": 40},
    "target_training": {"learning_rate": {"values": [0.003, 0.01]}, "epochs": 2, "max_length": 48,
                        "max_train_examples": 100, "max_eval_examples": 40},
    "search": {"trials_per_cell": 2, "scheduler": "none"},
    "resources": {"max_concurrent_trials": 2},
}
# Long enough in stage 2 for the signal to land between trials: 6 trials of 12 epochs, one at a time.
LONG = SMALL | {
    "name": "slurm-term",
    "target_training": {"learning_rate": {"values": [0.003, 0.01, 0.02]}, "epochs": 12, "max_length": 48,
                        "max_train_examples": 300, "max_eval_examples": 40},
    "search": {"trials_per_cell": 3, "scheduler": "none"},
    "resources": {"max_concurrent_trials": 1},
}

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(slurm.missing() is not None, reason=slurm.missing() or "")]


@pytest.fixture(scope="module")
def cluster():
    local = slurm.LocalSlurm(nodes=2, cpus=1)
    try:
        yield local
    finally:
        local.stop()
        local.kill_leftovers(str(local.root))  # nothing should be left: the tests assert that first
        import shutil

        shutil.rmtree(local.root, ignore_errors=True)


def job_env(cluster: slurm.LocalSlurm, tmp_path: Path) -> dict[str, str]:
    """The submitting shell of a user: xgrid's environment on PATH (sbatch passes it on), a Ray token of the test's
    own (the script then turns token authentication on for every node), the job's Ray files in the test's folder."""
    token = tmp_path / "ray_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = dict(cluster.env)
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "MLFLOW_TRACKING_URI", "XGRID_OUTPUT_DIR",
                 "XGRID_STORE_ROOT", "RAY_TMPDIR"):
        env.pop(name, None)
    return env | {"PATH": f"{Path(sys.executable).parent}:{env['PATH']}", "PYTHONPATH": str(ROOT),
                  "RAY_AUTH_TOKEN_PATH": str(token), "XGRID_RAY_TMPDIR": str(cluster.root),
                  "COLUMNS": "", "PYTHONUNBUFFERED": "1"}


def submit(cluster, tmp_path: Path, *args: str) -> int:
    return cluster.sbatch("--nodes=2", "--cpus-per-task=1", f"--output={tmp_path}/job-%j.out", str(SCRIPT), *args,
                          env=job_env(cluster, tmp_path), cwd=tmp_path)


def output(tmp_path: Path, job_id: int) -> str:
    return (tmp_path / f"job-{job_id}.out").read_text(errors="replace")


def assert_ray_stopped(cluster, out: str) -> None:
    assert "stopping the Ray nodes" in out, out[-3000:]
    # every Ray process of the job (their command lines name its temp folder) is gone when the job is
    assert cluster.kill_leftovers(f"{cluster.root}/xgrid-") == [], "Ray processes outlived the job"


def mlflow_runs(folder: Path, experiment: str):
    client = MlflowClient(f"sqlite:///{folder / 'runs' / 'mlflow.db'}")
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


@pytest.mark.slow  # ~2 min: Ray on two SLURM nodes and a small search
def test_sbatch_runs_a_search_on_both_nodes_of_the_allocation(cluster, tmp_path):
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SMALL))
    job_id = submit(cluster, tmp_path, "space.yaml", "--output-dir", "runs")
    info = cluster.wait(job_id)
    out = output(tmp_path, job_id)
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), out[-4000:]
    assert "2 node(s): Ray head on n1" in out and "workers: n2" in out
    assert "Ray cluster up: 2 node(s) alive" in out
    assert "xgrid search space.yaml --output-dir runs --address " in out  # the arguments, and the head's address
    assert "stage 2: 4 trials (4 completed, 0 stopped early, 0 failed)" in out
    assert "xgrid search finished" in out and "done (exit 0)" in out
    assert_ray_stopped(cluster, out)
    (search_dir,) = (tmp_path / "runs" / "slurm-small").iterdir()
    trials = json.loads((search_dir / "results.json").read_text())["trials"]
    assert sorted(t["status"] for t in trials) == ["completed"] * 4
    runs = mlflow_runs(tmp_path, "slurm-small")
    assert sorted(r.data.tags["stage"] for r in runs) == ["search", "stage1"] + ["stage2"] * 4
    assert {r.info.status for r in runs} == {"FINISHED"}
    # Two trials at once on nodes of one CPU each: one ran on the worker node. Read from the runs' times (both
    # nodes share an IP here, so their node tags cannot differ); the progress lines, every 5 s, can miss it.
    spans = sorted((r.info.start_time, r.info.end_time) for r in runs if r.data.tags["stage"] == "stage2")
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])), spans


def wait_for_finished_trials(search_dir_parent: Path, job_id: int, cluster, count: int, timeout: float = 600) -> Path:
    """The search folder, once its results.json lists `count` finished stage-2 trials (the job still running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for results in search_dir_parent.glob("*/results.json"):
            try:
                trials = json.loads(results.read_text())["trials"]
            except (ValueError, KeyError):  # being rewritten
                continue
            if sum(t["status"] == "completed" for t in trials) >= count:
                return results.parent
        state = cluster.job(job_id).get("JobState")
        assert state in ("PENDING", "RUNNING", "CONFIGURING"), f"job ended ({state}) before the signal was sent"
        time.sleep(0.5)
    raise AssertionError(f"no {count} finished trials within {timeout} s")


@pytest.mark.slow  # ~4 min: a search stopped by SIGTERM in its SLURM job, then continued by a second job
def test_sigterm_at_the_end_of_the_allocation_leaves_a_search_the_next_job_resumes(cluster, tmp_path):
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(LONG))
    job_id = submit(cluster, tmp_path, "space.yaml", "--output-dir", "runs")
    search_dir = wait_for_finished_trials(tmp_path / "runs" / "slurm-term", job_id, cluster, count=1)
    # What `#SBATCH --signal=B:TERM@600` does 10 minutes before the time limit: SIGTERM to the batch shell only.
    cluster.run("scancel", "--batch", "--signal=TERM", str(job_id))
    info = cluster.wait(job_id)
    out = output(tmp_path, job_id)
    assert info["ExitCode"] == "143:0", out[-4000:]
    assert "SIGTERM: passed on to the xgrid driver" in out
    assert "error: interrupted by SIGTERM" in out and "continue with: xgrid search --resume" in out, out[-4000:]
    assert "done (exit 143)" in out
    assert_ray_stopped(cluster, out)
    state = json.loads((search_dir / "search_state.json").read_text())
    assert state["status"] == "interrupted"
    status = subprocess.run([sys.executable, "-m", "xgrid.cli", "status", str(search_dir)], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": ""}, timeout=300)
    assert "interrupted" in status.stdout, status.stdout + status.stderr
    first = json.loads((search_dir / "results.json").read_text())["trials"]
    kept = {t["trial_id"] for t in first if t["status"] == "completed"}
    assert 1 <= len(kept) < 6
    runs = mlflow_runs(tmp_path, "slurm-term")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    (parent,) = [r for r in runs if r.data.tags["stage"] == "search"]
    assert parent.info.status == "KILLED"

    # The next allocation: the same script, --resume FOLDER and the same options.
    second = submit(cluster, tmp_path, "--resume", str(search_dir), "--output-dir", "runs")
    info = cluster.wait(second)
    out = output(tmp_path, second)
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), out[-4000:]
    assert_ray_stopped(cluster, out)
    trials = json.loads((search_dir / "results.json").read_text())["trials"]
    done = [t for t in trials if t["status"] == "completed"]
    assert len(done) == 6 and kept <= {t["trial_id"] for t in done}  # what the first job finished was kept
    cells = {}
    for t in done:
        cells[t["cell"]["cell_id"]] = cells.get(t["cell"]["cell_id"], 0) + 1
    assert sorted(cells.values()) == [3, 3]
    runs = mlflow_runs(tmp_path, "slurm-term")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    (parent,) = [r for r in runs if r.data.tags["stage"] == "search"]
    assert parent.info.status == "FINISHED" and parent.data.tags.get("xgrid.resumes") == "1"
    assert sum(r.data.tags["stage"] == "stage2" and r.info.status == "FINISHED" for r in runs) == 6


# Far longer than the job's time limit on any machine: the job ends by the signal, never by the search finishing.
ENDLESS = LONG | {
    "name": "slurm-limit",
    "target_training": LONG["target_training"] | {"epochs": 200, "max_train_examples": 600},
}


@pytest.mark.slow  # ~3-4 min: bounded by the job's time limit
def test_the_time_limit_signal_of_the_sbatch_line_reaches_the_driver_before_the_kill(cluster, tmp_path):
    # SLURM itself sends the signal: --time=5 with the script's own --signal mechanism at 120 s before the limit
    # (SLURM may send it up to 60 s early, so 2-3 minutes in: after Ray's start-up, well before the kill).
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(ENDLESS))
    job_id = cluster.sbatch("--nodes=2", "--cpus-per-task=1", "--time=5", "--signal=B:TERM@120",
                            f"--output={tmp_path}/job-%j.out", str(SCRIPT), "space.yaml", "--output-dir", "runs",
                            env=job_env(cluster, tmp_path), cwd=tmp_path)
    info = cluster.wait(job_id, timeout=600)
    out = output(tmp_path, job_id)
    # ended by the script's own exit after the driver's, not by SLURM's kill at the limit (JobState TIMEOUT)
    assert (info["JobState"], info["ExitCode"]) == ("FAILED", "143:0"), (info, out[-4000:])
    assert "SIGTERM: passed on to the xgrid driver" in out, out[-4000:]
    assert "error: interrupted by SIGTERM" in out and "continue with: xgrid search --resume" in out
    assert_ray_stopped(cluster, out)
    (search_dir,) = (tmp_path / "runs" / "slurm-limit").iterdir()
    assert json.loads((search_dir / "search_state.json").read_text())["status"] == "interrupted"
    runs = mlflow_runs(tmp_path, "slurm-limit")
    assert runs and not [r for r in runs if r.info.status == "RUNNING"]
