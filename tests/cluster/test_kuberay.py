"""cluster/kuberay/rayjob.yaml, read as KubeRay would read it (no Kubernetes here): a ray.io/v1 RayJob with a head
group and a worker group, whose entrypoint is an `xgrid search` the real CLI parser accepts and a real search would
not refuse, on the image docker/Dockerfile builds, with the environment names and paths of docker/ (the compose
nodes' and the image's), the tracking URI and S3 keys from Secrets, and a preStop hook that calls real Ray APIs."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import typer
import yaml

ROOT = Path(__file__).resolve().parents[2]
RAYJOB = ROOT / "cluster" / "kuberay" / "rayjob.yaml"
PVC = ROOT / "cluster" / "kuberay" / "runs-pvc.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"


@pytest.fixture(scope="module")
def job() -> dict:
    (document,) = list(yaml.safe_load_all(RAYJOB.read_text()))
    return document


def containers(job: dict) -> dict[str, dict]:
    cluster = job["spec"]["rayClusterSpec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return {c["name"]: c for g in groups for c in g["template"]["spec"]["containers"]}


def test_it_is_a_rayjob_with_a_head_and_a_worker_group(job):
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    assert cluster["headGroupSpec"]["template"]["spec"]["containers"]
    (workers,) = cluster["workerGroupSpecs"]
    assert workers["groupName"] and workers["replicas"] >= 1
    assert workers["minReplicas"] <= workers["replicas"] <= workers["maxReplicas"]
    for group in (cluster["headGroupSpec"], workers):  # KubeRay passes these to `ray start` as --key=value strings
        assert all(isinstance(v, str) for v in group["rayStartParams"].values()), group["rayStartParams"]
    pin = next(d for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
               if d.startswith("ray["))
    assert re.fullmatch(r"ray\[[^\]]*\]==(\d+\.\d+)\.\*", pin), pin
    assert cluster["rayVersion"].startswith(pin.split("==")[1].rstrip("*")), (cluster["rayVersion"], pin)


def test_the_entrypoint_is_an_xgrid_search_the_cli_accepts(job):
    from xgrid.cli import app
    from xgrid.search.options import SearchOptions
    from xgrid.search.runner import check_address

    words = shlex.split(job["spec"]["entrypoint"])
    assert words[:2] == ["xgrid", "search"], words
    command = typer.main.get_command(app).get_command(None, "search")
    context = command.make_context("search", words[2:])  # the real parser: unknown options or bad values raise
    assert context.params["address"] == "auto"  # the driver joins the cluster it runs in, on the head
    check_address(SearchOptions(address=context.params["address"]))  # refused addresses (ray://) raise here
    from xgrid.spaces import resolve_space

    assert Path(resolve_space(str(context.params["space"]))).is_file()  # a space shipped in the image
    assert "ray://" not in RAYJOB.read_text()


def test_the_image_and_environment_are_those_of_docker(job):
    compose = yaml.safe_load(COMPOSE.read_text())
    node = compose["x-ray-node"]
    assert node["build"]["dockerfile"] == "docker/Dockerfile"
    found = containers(job)
    assert set(found) == {"ray-head", "ray-worker"}
    for container in found.values():
        assert container["image"] == node["image"]  # xgrid:cpu, the tag compose builds from docker/Dockerfile
    dockerfile = DOCKERFILE.read_text()
    compose_env = node["environment"]
    for name, container in found.items():
        env = {e["name"]: e for e in container["env"]}
        for var in ("MLFLOW_TRACKING_URI", "XGRID_STORE_ROOT", "XGRID_OUTPUT_DIR", "HF_HOME", "AWS_ACCESS_KEY_ID",
                    "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION", "RAY_USAGE_STATS_ENABLED"):
            assert var in env and var in compose_env, (name, var)
        for var in ("XGRID_OUTPUT_DIR", "HF_HOME", "RAY_USAGE_STATS_ENABLED"):  # the same paths and switches
            assert env[var]["value"] == compose_env[var], (name, var)
        assert f"ENV XGRID_OUTPUT_DIR={env['XGRID_OUTPUT_DIR']['value']}" in dockerfile
        assert env["XGRID_STORE_ROOT"]["value"].startswith("s3://")  # workers share no file system with the head
        # credentials come from Secrets, never as values in the manifest
        for var in ("MLFLOW_TRACKING_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert "value" not in env[var] and env[var]["valueFrom"]["secretKeyRef"]["key"] == var, (name, var)
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "/dev/shm" in mounts and env["HF_HOME"]["value"] in mounts
    assert "runtimeEnvYAML" not in job["spec"]  # Ray's runtime-env agent logs a runtime env's env_vars in clear
    # the xgrid user of the image (uid 1000) may write the volumes
    assert "useradd --create-home --uid 1000" in dockerfile
    cluster = job["spec"]["rayClusterSpec"]
    for group in (cluster["headGroupSpec"], *cluster["workerGroupSpecs"]):
        assert group["template"]["spec"]["securityContext"]["fsGroup"] == 1000


def test_the_cli_reads_the_environment_names_the_manifest_sets(job):
    from xgrid.cli import app

    command = typer.main.get_command(app).get_command(None, "search")
    envvars = {p.name: p.envvar for p in command.params if getattr(p, "envvar", None)}
    assert envvars["tracking_uri"] == "MLFLOW_TRACKING_URI"
    assert envvars["store_root"] == "XGRID_STORE_ROOT"
    assert envvars["output_dir"] == "XGRID_OUTPUT_DIR"


def test_the_search_folders_live_on_the_claimed_volume(job):
    (claim,) = list(yaml.safe_load_all(PVC.read_text()))
    assert (claim["apiVersion"], claim["kind"]) == ("v1", "PersistentVolumeClaim")
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    volumes = {v["name"]: v for v in head["volumes"]}
    (container,) = head["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == env["XGRID_OUTPUT_DIR"])
    assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_the_head_stops_the_driver_before_it_goes_and_gives_it_time(job):
    from ray.job_submission import JobStatus, JobSubmissionClient

    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    (container,) = head["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["python", "-c"]
    compile(command[2], "preStop", "exec")  # valid Python, calling methods that exist in the pinned Ray
    called = set(re.findall(r"client\.(\w+)\(", command[2]))
    assert called == {"list_jobs", "stop_job", "get_job_status"}, called
    for name in called:
        assert callable(getattr(JobSubmissionClient, name))
    assert JobStatus.RUNNING
    env = {e["name"]: e.get("value") for e in container["env"]}
    wait = int(env["RAY_JOB_STOP_WAIT_TIME_S"])  # Ray's default SIGKILLs the driver 3 s after the SIGTERM
    assert 60 <= wait < head["terminationGracePeriodSeconds"]
