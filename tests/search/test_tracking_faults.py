"""A tracking server killed for real (SIGKILL) while a search runs: every trial still runs and is in the results,
the search does not wait on the dead server, and once a server answers again on the same port and store MLflow
ends complete: each trial one FINISHED run with its metrics, none left RUNNING, none twice. The server comes back
either during the search (the queue drains by itself) or after it (the journal in the search folder is replayed,
as `xgrid search --resume` does)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.search.test_mlflow_server import free_port
from xgrid import tracking_schema as schema
from xgrid.config import parse_space
from xgrid.events import SearchListener
from xgrid.planning.plan import build_plan
from xgrid.search.options import SearchOptions
from xgrid.search.runner import run_search
from xgrid.tracking import QueuedWriter, open_writer
from xgrid.tracking import queued
from xgrid.tracking.listener import TrackingListener
from xgrid.tracking.mlflow_writer import MlflowWriter
from xgrid.tracking.queued import JOURNAL_DIR, JOURNAL_FILE, read_journal

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a search each, 1.5-3 min on 2 CPUs

WAIT = 300  # seconds: hang guards, never bounds the test measures (a server start took 93 s on a loaded machine)
SPACE = {
    "name": "it-faults",
    "base_models": [{"name": "tiny"}],
    "intermediates": ["none", "mb_chunk"],
    "targets": ["mb_udpos"],
    "seeds": [0],
    "intermediate_training": {"learning_rate": 0.003, "epochs": 1, "max_length": 48, "max_train_examples": 200,
                              "max_eval_examples": 40},
    "target_training": {"learning_rate": 0.003, "epochs": 2, "max_length": 48,
                        "max_train_examples": 100, "max_eval_examples": 40},
    "search": {"trials_per_cell": 1, "scheduler": "none"},
    "resources": {"max_concurrent_trials": 1},  # one after another: the second starts with the server dead
}
TRIALS = 2  # 2 cells x trials_per_cell


class Server:
    """`mlflow server` on 127.0.0.1:port over one backend store, which can be killed and started again."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
             "--artifacts-destination", str(self.folder / "artifacts"), "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + WAIT
        while True:
            try:
                if urllib.request.urlopen(f"{self.url}/health", timeout=2).status == 200:
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail("mlflow server did not come up on 127.0.0.1")
            time.sleep(0.5)

    def kill(self) -> None:
        """SIGKILL to the server and its workers (its own process group): nothing answers on the port after."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=WAIT)


@pytest.fixture
def server(tmp_path):
    server = Server(tmp_path)
    server.start()
    yield server
    server.kill()


class Fault(SearchListener):
    """Kills the server when the first trial starts (its run is being created: that answer is lost); starts it
    again when trial number `back_at` starts, or never. The start is waited for here, so the server surely
    answers before the search ends (a start takes up to 1.5 min on a loaded machine): this listener holds the
    search meanwhile, xgrid's does not."""

    def __init__(self, server: Server, back_at: int | None = None):
        self.server, self.back_at, self.started = server, back_at, 0

    def trial_started(self, record) -> None:
        self.started += 1
        if self.started == 1:
            self.server.kill()
        if self.started == self.back_at:
            self.server.start()


def search_with(server: Server, fault: Fault, registry, root: Path):
    writer = open_writer(server.url, SPACE["name"])
    tracker = TrackingListener(writer)
    started = time.perf_counter()
    outcome = run_search(build_plan(parse_space(SPACE, registry), registry),
                         SearchOptions(output_root=root, listeners=(tracker, fault), ray_init={"num_cpus": 2}))
    print(f"search with the tracking server killed: {time.perf_counter() - started:.0f} s "
          f"(run_search's own clock {outcome.seconds:.0f} s), {writer.pending} writes pending at its end")
    return outcome, writer, tracker


def assert_complete(url: str, outcome) -> None:
    """Every trial of the search in MLflow once, FINISHED, with its final metrics; nothing left RUNNING."""
    records = [r for rs in outcome.records.values() for r in rs]
    assert len(records) == TRIALS and {r.status for r in records} == {"completed"}  # every trial ran
    client = MlflowClient(url)
    experiment = client.get_experiment_by_name(SPACE["name"])
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert not [r for r in runs if r.info.status != "FINISHED"]  # none RUNNING, none failed
    stages = Counter(r.data.tags[schema.STAGE] for r in runs)
    assert stages == {schema.SEARCH_STAGE: 1, schema.STAGE1: 1, schema.STAGE2: TRIALS}  # no duplicates
    trials = {r.data.tags[schema.TRIAL_ID_TAG]: r for r in runs if r.data.tags[schema.STAGE] == schema.STAGE2}
    assert set(trials) == {r.trial_id for r in records}
    for record in records:
        logged = trials[record.trial_id].data.metrics
        assert logged["f1.avg"] == pytest.approx(record.metrics["f1.avg"])
        assert logged[schema.select_metric(schema.ENGLISH_DEV)] is not None
    parent = next(r for r in runs if r.data.tags[schema.STAGE] == schema.SEARCH_STAGE)
    assert all(r.data.tags[schema.PARENT_TAG] == parent.info.run_id for r in runs if r is not parent)
    assert {"results.json", "space.yaml"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_the_server_comes_back_after_the_search_and_resume_completes_mlflow(server, registry, tmp_path,
                                                                               monkeypatch):
    monkeypatch.setattr(queued, "CLOSE_TIMEOUT", 5.0)  # how long the search's end waits (60 s for a user)
    outcome, writer, _ = search_with(server, Fault(server), registry, tmp_path / "runs")
    journal = outcome.search_dir / JOURNAL_DIR / JOURNAL_FILE
    assert writer.pending > 0 and writer.journal == journal and writer.unreachable
    assert len(read_journal(journal)[0]) == writer.pending  # what is left is in the search folder

    server.start()  # the same port and backend store
    resumed = QueuedWriter(MlflowWriter(server.url, SPACE["name"]))
    resumed.use_folder(outcome.search_dir)  # what `xgrid search --resume` does first
    assert resumed.close(WAIT) == 0 and not resumed.failed
    assert read_journal(journal)[0] == []
    assert_complete(server.url, outcome)


def test_the_server_comes_back_during_the_search_and_the_queue_drains(server, registry, tmp_path):
    fault = Fault(server, back_at=2)
    outcome, writer, _ = search_with(server, fault, registry, tmp_path / "runs")
    assert writer.pending == 0 and not writer.failed  # drained before the search's end returned
    assert_complete(server.url, outcome)
