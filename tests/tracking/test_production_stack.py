"""docker/compose.yaml's tracking stack, without Docker: `mlflow server --backend-store-uri postgresql+psycopg://...
--artifacts-destination s3://mlflow-artifacts/` on a real PostgreSQL and an S3 server that checks signatures
(tests/stack_fixtures.py), and `xgrid search` run as a user runs it (the CLI in a subprocess) with
`--tracking-uri http://xgrid:PASSWORD@127.0.0.1:PORT --store-root s3://xgrid-store/store` and the S3 settings a
compose node has (AWS_ENDPOINT_URL for pyarrow, MLFLOW_S3_ENDPOINT_URL for boto3).

One search, `xgrid compare` on it, then a second search in a fresh temp folder (an empty local cache): the runs
finish in PostgreSQL, the search's files and compare's CSVs and PNGs are objects in the artifact bucket, compare
reads the experiment back through the server, stage-1 checkpoints are objects in the store bucket that the second
search reloads instead of training, and no credential (the S3 secret the stage-1 tasks and Tune trials signed
their uploads with, the tracking URI's password, MLFLOW_TRACKING_PASSWORD) is in any file Ray, xgrid or MLflow
wrote."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.stack_fixtures import STORE_BUCKET, mlflow_stack, postgres, s3_server  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a server stack and two searches: minutes on 2 CPUs

ROOT = Path(__file__).resolve().parents[2]
SPACE = {
    "name": "prod-stack",
    "base_models": [{"name": "tiny"}],
    "intermediates": ["none", "mb_chunk", "mb_para"],  # a syntactic and a semantic one: what compare contrasts
    "targets": ["mb_udpos"],
    "seeds": [0],
    "intermediate_training": {"learning_rate": 0.003, "epochs": 1, "max_length": 48, "max_train_examples": 100,
                              "max_eval_examples": 20},
    "target_training": {"learning_rate": 0.003, "epochs": 2, "max_length": 48, "max_train_examples": 60,
                        "max_eval_examples": 20},
    "search": {"trials_per_cell": 1, "scheduler": "none"},
    "resources": {"trial_backend": "inline", "max_concurrent_trials": 2},
}
STORE = f"s3://{STORE_BUCKET}/store"


def xgrid(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xgrid.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=1500)


def said(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"


class Searched:
    pass


@pytest.fixture(scope="module")
def searched(mlflow_stack, tmp_path_factory):
    folder = tmp_path_factory.mktemp("prod-stack")
    (folder / "space.yaml").write_text(yaml.safe_dump(SPACE))
    password, token = f"xgrid-planted-{secrets.token_hex(10)}", f"xgrid-planted-{secrets.token_hex(10)}"
    uri = mlflow_stack.url.replace("http://", f"http://xgrid:{password}@")
    # Each search gets its own Ray temp folder (short: Ray's socket paths are limited) and its own TMPDIR, so
    # the second one starts with an empty local checkpoint cache and has to read the store from S3.
    temps = [Path(tempfile.mkdtemp(prefix="xps-")) for _ in range(2)]
    base = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "XGRID_STORE_ROOT")}
    base.update(mlflow_stack.s3.env(), MLFLOW_TRACKING_PASSWORD=token, COLUMNS="", PYTHONPATH=str(ROOT))

    def env(i: int) -> dict[str, str]:
        (temps[i] / "ray").mkdir(exist_ok=True)
        (temps[i] / "tmp").mkdir(exist_ok=True)
        return {**base, "RAY_TMPDIR": str(temps[i] / "ray"), "TMPDIR": str(temps[i] / "tmp")}

    search = ["search", "space.yaml", "--tracking-uri", uri, "--store-root", STORE, "--output-dir", "runs"]
    s = Searched()
    s.stack, s.uri, s.folder, s.temps = mlflow_stack, uri, folder, temps
    s.secrets = [mlflow_stack.s3.secret_access_key, password, token]
    s.first = xgrid(search, folder, env(0))
    assert s.first.returncode == 0, said(s.first)
    (s.first_dir,) = (folder / "runs" / "prod-stack").iterdir()
    s.compare = xgrid(["compare", "prod-stack", "--tracking-uri", uri, "--output-dir", "runs"], folder, env(0))
    s.second = xgrid(search, folder, env(1))
    assert s.second.returncode == 0, said(s.second)
    (s.second_dir,) = set((folder / "runs" / "prod-stack").iterdir()) - {s.first_dir}
    yield s
    for temp in temps:
        shutil.rmtree(temp, ignore_errors=True)


def runs_of(searched, search_dir: Path):
    from mlflow import MlflowClient

    client = MlflowClient(searched.stack.url)
    experiment = client.get_experiment_by_name("prod-stack")
    runs = client.search_runs([experiment.experiment_id], f"tags.search_id = '{search_dir.name}'", max_results=1000)
    return client, experiment, runs


def test_the_runs_finish_in_postgres_through_the_server(searched):
    import psycopg

    _, experiment, runs = runs_of(searched, searched.first_dir)
    assert sorted(r.data.tags["stage"] for r in runs) == ["search", "stage1", "stage1", "stage2", "stage2", "stage2"]
    assert {r.info.status for r in runs} == {"FINISHED"}, [(r.info.run_name, r.info.status) for r in runs]
    parent = next(r for r in runs if r.data.tags["stage"] == "search")
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in runs if r is not parent)
    pg = searched.stack.postgres
    with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=pg.database) as db:
        stored = {row[0]: row[1] for row in db.execute(
            "SELECT run_uuid, status FROM runs WHERE experiment_id = %s", (int(experiment.experiment_id),))}
    assert {r.info.run_id for r in runs} <= set(stored) and {stored[r.info.run_id] for r in runs} == {"FINISHED"}
    assert not (searched.folder / "runs" / "mlflow.db").exists()  # nothing went to a local store


def test_the_search_files_and_compares_report_are_objects_in_the_artifact_bucket(searched):
    assert searched.compare.returncode == 0, said(searched.compare)
    _, experiment, runs = runs_of(searched, searched.first_dir)
    parent = next(r for r in runs if r.data.tags["stage"] == "search")
    prefix = f"{experiment.experiment_id}/{parent.info.run_id}/artifacts/"
    objects = {key.removeprefix(prefix) for key in searched.stack.s3.keys("mlflow-artifacts", prefix)}
    assert {"space.yaml", "plan.json", "results.csv", "results.json"} <= objects, sorted(objects)
    report = {name for name in objects if name.startswith("compare/")}
    assert any(name.endswith(".csv") for name in report) and any(name.endswith(".png") for name in report), report
    # ... and they are the files compare wrote locally, read back from the runs the server returned.
    local = searched.folder / "runs" / "compare" / "prod-stack"
    assert {f"compare/{p.name}" for p in local.iterdir() if p.suffix in (".csv", ".png")} <= report
    assert "syntactic" in searched.compare.stdout and "semantic" in searched.compare.stdout


def test_stage1_checkpoints_are_objects_in_the_store_bucket_and_the_second_search_reloads_them(searched):
    s3 = searched.stack.s3
    markers = [k for k in s3.keys(STORE_BUCKET, "store/checkpoints/") if k.endswith("/XGRID_COMPLETE")]
    # mb_chunk and mb_para ('none' trains nothing), and the tiny base model, stored like any checkpoint so every
    # node loads the same one.
    assert len(markers) == 3 and sum("/tiny-" in k for k in markers) == 1, markers
    assert re.search(r"stage 1: 2/2 checkpoints \(2 trained, 0 reused", searched.first.stdout), searched.first.stdout
    assert re.search(r"stage 1: 2/2 checkpoints \(0 trained, 2 reused from the store", searched.second.stdout), \
        searched.second.stdout
    # The second search's local cache was empty: what its trials loaded came down from the bucket.
    assert sorted(k for k in s3.keys(STORE_BUCKET, "store/checkpoints/") if k.endswith("/XGRID_COMPLETE")) == \
        sorted(markers)
    _, _, runs = runs_of(searched, searched.second_dir)  # a reused checkpoint is no stage-1 run
    assert sorted(r.data.tags["stage"] for r in runs) == ["search", "stage2", "stage2", "stage2"]
    assert {r.info.status for r in runs} == {"FINISHED"}, [(r.info.run_name, r.info.status) for r in runs]
    # Tune's own storage is under the store too, and each trial uploads its epoch checkpoints there itself (from
    # its actor, with the key it found in its node's environment).
    tune_keys = s3.keys(STORE_BUCKET, f"store/ray/{searched.first_dir.name}/")
    assert any("/checkpoint_" in key for key in tune_keys), tune_keys[:20]


def test_no_credential_is_in_any_file_ray_xgrid_or_mlflow_wrote(searched):
    """The S3 secret did reach the stage-1 tasks and the Tune trials (the server refuses a request signed with any
    other: their checkpoints would not be in the bucket), yet no file under either Ray session folder, the search
    folders, the local caches, the bucket objects, the runs' params and tags or the CLI's output holds it, nor the
    tracking URI's password or MLFLOW_TRACKING_PASSWORD."""
    needles = [value.encode() for value in searched.secrets]
    scanned, found = [], []
    roots = [searched.folder, *searched.temps]
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                scanned.append(path)
                data = path.read_bytes()
                found += [f"{path} holds secret #{i}" for i, n in enumerate(needles) if n in data]
    agent_logs = [p for p in scanned if p.name == "runtime_env_agent.log"]
    assert len({p.parents[1] for p in agent_logs}) >= 2, "both searches' Ray session folders were scanned"
    s3 = searched.stack.s3
    for bucket in s3.buckets:
        for key in s3.keys(bucket):
            data = s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
            found += [f"s3://{bucket}/{key} holds secret #{i}" for i, n in enumerate(needles) if n in data]
    for search_dir in (searched.first_dir, searched.second_dir):
        for run in runs_of(searched, search_dir)[2]:
            text = repr(sorted(run.data.params.items())) + repr(sorted(run.data.tags.items()))
            found += [f"run {run.info.run_name} holds secret #{i}" for i, n in enumerate(searched.secrets) if n in text]
    for result in (searched.first, searched.compare, searched.second):
        found += [f"CLI output holds secret #{i}" for i, n in enumerate(searched.secrets)
                  if n in result.stdout + result.stderr]
    assert found == [], "\n".join(found)
    assert searched.stack.s3.keys(STORE_BUCKET, "store/checkpoints/"), "the stage-1 tasks wrote with the secret"
