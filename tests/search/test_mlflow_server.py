"""`xgrid search --tracking-uri http://...` against a real `mlflow server` on 127.0.0.1, run as a user would:
the CLI in a subprocess, then the runs read back through the server."""

import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from mlflow import MlflowClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ~80 s: a server and a search (keeps the default suite under 15 min)

SPACE = {
    "name": "it-server",
    "base_models": [{"name": "tiny"}],
    "intermediates": ["none", "mb_chunk"],
    "targets": ["mb_udpos"],
    "seeds": [0],
    "intermediate_training": {"learning_rate": 0.003, "epochs": 1, "max_length": 48, "max_train_examples": 200,
                              "max_eval_examples": 40},
    "target_training": {"learning_rate": 0.003, "epochs": 2, "max_length": 48, "max_train_examples": 100,
                        "max_eval_examples": 40},
    "search": {"trials_per_cell": 1, "scheduler": "none"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail("mlflow server did not come up on 127.0.0.1")
        time.sleep(0.5)
    yield url
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def test_search_logs_to_a_tracking_server(tmp_path, mlflow_server):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    result = subprocess.run(
        [sys.executable, "-m", "xgrid.cli", "search", str(space), "--tracking-uri", mlflow_server,
         "--output-dir", str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=400, cwd=tmp_path, env={**__import__("os").environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"at {mlflow_server}" in result.stdout
    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("it-server")
    runs = client.search_runs([experiment.experiment_id])
    stages = sorted(r.data.tags["stage"] for r in runs)
    assert stages == ["search", "stage1", "stage2", "stage2"]
    assert all(r.info.status == "FINISHED" for r in runs)
    parent = next(r for r in runs if r.data.tags["stage"] == "search")
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in runs if r is not parent)
    assert {"results.csv", "space.yaml"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    # Nothing was written to a local store: the server holds everything.
    assert not (tmp_path / "runs" / "mlflow.db").exists()
