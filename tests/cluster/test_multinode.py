"""A real two-node Ray cluster on loopback whose second node cannot see the driver's files.

The head (127.0.0.2) is started by the test in this machine's file system; the second node (127.0.0.3) in a
mount namespace of its own with an empty tmpfs over /tmp, so the driver's search folder, its caches and the test's
temp folders do not exist there (as on a node of a cluster that shares no file system). The store is S3 (moto's
server). A search with `--address` must run trials on both nodes, the second node reading the stage-1 checkpoint
and the tiny model from the store, never a path of the driver's; a local store root is refused before anything
runs; and `ray job submit -- xgrid search ... --address auto`, as the README tells cluster users, works the same.
Both nodes are stopped by their own processes' group, never with `ray stop` (which kills every Ray on the
machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.stack_fixtures import STORE_BUCKET, free_port, s3_server  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HEAD_IP, NODE_IP = "127.0.0.2", "127.0.0.3"
START_TIMEOUT = 300  # a guard for a loaded 2-CPU machine, not a speed check

SPACE = """\
name: two-nodes
base_models: [{name: tiny}]
intermediates: [mb_chunk]
targets: [mb_udpos]
seeds: [0]
intermediate_training: {learning_rate: 0.003, epochs: 1, max_length: 48, max_train_examples: 120, max_eval_examples: 40}
# Trials long enough (~10 s quiet) that the two overlap: an inline trial's actor is reused by the next trial when one
# finishes first, and the test needs one trial on each node.
target_training: {learning_rate: {values: [0.002, 0.005]}, epochs: 3, max_length: 48, max_train_examples: 1000,
                  max_eval_examples: 40}
search: {trials_per_cell: 2, scheduler: none}
resources: {max_concurrent_trials: 2, cpus_per_worker: 1, trial_backend: inline}
"""


def _can_unshare() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True).returncode == 0


class Cluster:
    def __init__(self, folder: Path, env: dict[str, str]):
        self.folder, self.env, self.nodes = folder, env, []
        self.port, self.dashboard = free_port(), free_port()
        self.address = f"{HEAD_IP}:{self.port}"

    def start(self) -> None:
        common = ["--block", "--disable-usage-stats", "--num-cpus", "1"]
        head = ["ray", "start", "--head", "--node-ip-address", HEAD_IP, "--port", str(self.port),
                "--include-dashboard=true", "--dashboard-host", HEAD_IP, "--dashboard-port", str(self.dashboard),
                "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
                *common]
        # A short folder of its own: Ray's socket paths under it must stay within a Unix socket's 107 bytes.
        self.head_tmp = tempfile.mkdtemp(prefix="xgrid-head-", dir="/tmp")
        self._spawn("head", head, {"RAY_TMPDIR": self.head_tmp})
        self._wait_nodes(1)
        # The second node: its own /tmp (an empty tmpfs), so nothing under the driver's /tmp exists for it.
        worker = " ".join(["ray", "start", "--address", self.address, "--node-ip-address", NODE_IP,
                           "--dashboard-agent-listen-port", str(free_port()), *common])
        script = f"mount -t tmpfs -o size=2g xgrid-node-tmp /tmp && mkdir -p /tmp/ray-node && exec {worker}"
        self._spawn("node", ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                    {"RAY_TMPDIR": "/tmp/ray-node"})
        self._wait_nodes(2)

    def _spawn(self, name: str, command: list[str], extra: dict[str, str]) -> None:
        log = open(self.folder / f"{name}.log", "w")
        self.nodes.append(subprocess.Popen(command, env=self.env | extra, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True, cwd=self.folder))

    def alive_nodes(self) -> list[str]:
        probe = ("import json, ray; ray.init(address=%r, logging_level='ERROR');"
                 "print(json.dumps([n['NodeManagerAddress'] for n in ray.nodes() if n['Alive']]))" % self.address)
        try:
            out = subprocess.run([sys.executable, "-c", probe], env=self.env, capture_output=True, text=True,
                                 timeout=60)
        except subprocess.TimeoutExpired:  # the head is not up yet
            return []
        return json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 and out.stdout.strip() else []

    def _wait_nodes(self, count: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.nodes):
                break
            if len(self.alive_nodes()) >= count:
                return
            time.sleep(2)
        logs = {p.name: p.read_text(errors="replace")[-2000:] for p in self.folder.glob("*.log")}
        self.stop()
        pytest.fail(f"the cluster did not reach {count} node(s): {logs}")

    def stop(self) -> None:
        for process in reversed(self.nodes):  # the worker node first
            try:
                os.killpg(process.pid, signal.SIGTERM)  # `ray start --block` stops its node's processes
                process.wait(timeout=60)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if getattr(self, "head_tmp", None):
            shutil.rmtree(self.head_tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3_server):  # noqa: F811
    if not _can_unshare():
        pytest.skip("needs root and unshare(1) for a node with its own /tmp")
    folder = tmp_path_factory.mktemp("cluster")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "XGRID_"))}
    # Token authentication off for this test's own cluster (every node and the driver would need the token);
    # the nodes' environment holds the store's credentials and endpoint, as a real cluster's nodes do.
    env |= s3_server.env() | {"RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT), "COLUMNS": "",
                              "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}"}
    running = Cluster(folder, env)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def xgrid(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 1500) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xgrid.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def runs(db: Path) -> list[dict]:
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT run_uuid, status FROM runs").fetchall()
        tags = {}
        for run, key, value in con.execute("SELECT run_uuid, key, value FROM tags"):
            tags.setdefault(run, {})[key] = value
    return [{"status": status, **tags.get(run, {})} for run, status in rows]


def test_trials_run_on_both_nodes_and_the_blind_node_reads_the_store(cluster, tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)
    store = f"s3://{STORE_BUCKET}/two-nodes-{tmp_path.name}"
    started = time.monotonic()
    result = xgrid(["search", "space.yaml", "--address", cluster.address, "--store-root", store,
                    "--output-dir", "runs", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"], tmp_path,
                   cluster.env)
    wall = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (search_dir,) = (tmp_path / "runs" / "two-nodes").iterdir()
    trials = json.loads((search_dir / "results.json").read_text())["trials"]
    assert len(trials) == 2 and {t["status"] for t in trials} == {"completed"}, trials
    found = runs(tmp_path / "mlflow.db")
    assert {r["status"] for r in found} == {"FINISHED"}
    assert all(r.get("xgrid.node") for r in found), found  # every run names its node (the parent: the driver's)
    stage2 = [r for r in found if r.get("stage") == "stage2"]
    stage1 = [r for r in found if r.get("stage") == "stage1"]
    # Two trials at once on two nodes of one CPU each: one on each node, and one of them on the node that did not
    # train the stage-1 checkpoint (nor build the tiny model): it read both from the store.
    assert sorted(r["xgrid.node"] for r in stage2) == [HEAD_IP, NODE_IP], stage2
    assert len(stage1) == 1 and stage1[0]["xgrid.node"] in (HEAD_IP, NODE_IP)
    print(f"two-node search: {wall:.0f} s wall; stage 1 on {stage1[0]['xgrid.node']}")


def test_a_local_store_the_second_node_cannot_see_is_refused_before_anything_runs(cluster, tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)
    result = xgrid(["search", "space.yaml", "--address", cluster.address, "--store-root", str(tmp_path / "store"),
                    "--output-dir", "runs", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"], tmp_path,
                   cluster.env, timeout=600)
    assert result.returncode != 0
    said = result.stdout + result.stderr
    assert f"--store-root {tmp_path / 'store'} is not visible from node {NODE_IP}" in said, said[-2000:]
    assert "s3://" in said and "Traceback" not in said
    assert not (tmp_path / "runs" / "two-nodes").exists() or not any((tmp_path / "runs" / "two-nodes").iterdir())


def test_ray_job_submit_runs_a_search_on_the_cluster(cluster, tmp_path):
    """The README's way for cluster users: the driver runs on the head, `--address auto` finds the cluster."""
    (tmp_path / "space.yaml").write_text(SPACE)
    store = f"s3://{STORE_BUCKET}/job-{tmp_path.name}"
    entry = (f"{sys.executable} -m xgrid.cli search {tmp_path / 'space.yaml'} --address auto --store-root {store} "
             f"--output-dir {tmp_path / 'runs'} --tracking-uri sqlite:///{tmp_path}/mlflow.db")
    started = time.monotonic()
    job = subprocess.run(["ray", "job", "submit", "--address", f"http://{HEAD_IP}:{cluster.dashboard}", "--", *entry.split()],
                         env=cluster.env, cwd=tmp_path, capture_output=True, text=True, timeout=1500)
    wall = time.monotonic() - started
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "succeeded" in job.stdout.lower()
    found = runs(tmp_path / "mlflow.db")
    stage2 = [r for r in found if r.get("stage") == "stage2"]
    assert len(stage2) == 2 and {r["status"] for r in found} == {"FINISHED"}
    assert {r["xgrid.node"] for r in stage2} == {HEAD_IP, NODE_IP}
    print(f"ray job submit search: {wall:.0f} s wall")
