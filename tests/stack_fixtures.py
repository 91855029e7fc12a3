"""The production tracking stack of docker/compose.yaml, without Docker, for tests: PostgreSQL from the
distribution's packages (started on 127.0.0.1 as an unprivileged user, its data in a temp folder), an S3 server
from PyPI (moto's server mode, with signature checking on, so a wrong or missing secret fails like on AWS) and a
real `mlflow server` on the two, started with the command compose runs.

Import the fixtures into a test module (`from tests.stack_fixtures import postgres, s3_server, mlflow_stack`).
A fixture whose programs are missing skips with the reason; CI installs them (.ci/run: postgresql; the dev extra:
moto[server], psycopg[binary]).
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REGION = "us-east-1"
ARTIFACT_BUCKET = "mlflow-artifacts"  # the buckets docker/compose.yaml's minio-init creates
STORE_BUCKET = "xgrid-store"
START_TIMEOUT = 180  # seconds: a generous guard for a loaded 2-CPU machine, not a speed check


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, what: str, log: Path | None = None,
                  timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
            pytest.fail(f"{what} did not come up at {url}\n{tail}")
        time.sleep(0.5)


def stop(process: subprocess.Popen) -> None:
    """Stop a server started with start_new_session=True: its own process group only (the mlflow server's
    gunicorn/uvicorn workers are in it)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


# --- PostgreSQL ----------------------------------------------------------------------------------------------
def postgres_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb and pg_ctl (Debian's layout), else PATH's."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parts[-3].split(".")])
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


@dataclass
class Postgres:
    host: str
    port: int
    user: str
    password: str
    database: str

    def uri(self, driver: str = "psycopg") -> str:
        """The backend-store URI in the form docker/compose.yaml gives `mlflow server`."""
        return f"postgresql+{driver}://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"


@pytest.fixture(scope="module")
def postgres():
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL's initdb/pg_ctl not found (/usr/lib/postgresql/*/bin): apt-get install postgresql")
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg 3 not installed: pip install 'psycopg[binary]' (the dev extra has it)")
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the distribution's postgres user
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as an unprivileged user")
        try:
            import pwd

            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
        as_user = ["runuser", "-u", "postgres", "--"]
    # Not under pytest's tmp_path: its parents are private to the user running pytest, and the postgres user
    # must reach the data folder. A short path also keeps the socket path within its length limit.
    base = Path(tempfile.mkdtemp(prefix="xgrid-pg-"))
    password = secrets.token_hex(12)
    (base / "pwfile").write_text(password + "\n")
    if as_user:
        for path in (base, base / "pwfile"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    data, log, port = base / "data", base / "postgres.log", free_port()

    def run(*cmd: str, timeout: float = START_TIMEOUT) -> None:
        done = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=timeout, cwd=base)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
                        + (log.read_text(errors="replace")[-2000:] if log.exists() else ""))

    run(str(bindir / "initdb"), "-D", str(data), "-U", "xgrid", f"--pwfile={base / 'pwfile'}",
        "--auth=scram-sha-256", "-E", "UTF8", "--no-sync")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off -c full_page_writes=off"
    try:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t",
            str(START_TIMEOUT), "start")
        with psycopg.connect(host="127.0.0.1", port=port, user="xgrid", password=password, dbname="postgres",
                             autocommit=True, connect_timeout=30) as conn:
            conn.execute("CREATE DATABASE mlflow")
        yield Postgres("127.0.0.1", port, "xgrid", password, "mlflow")
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=120, cwd=base)
        shutil.rmtree(base, ignore_errors=True)


# --- S3 (moto's server) -------------------------------------------------------------------------------------
@dataclass
class S3Server:
    endpoint: str
    access_key_id: str
    secret_access_key: str
    buckets: tuple[str, ...] = (ARTIFACT_BUCKET, STORE_BUCKET)
    log: Path | None = None

    def env(self) -> dict[str, str]:
        """What docker/compose.yaml gives a Ray node: the key, the region and the endpoint of pyarrow (the
        checkpoint store, Ray's storage) and of boto3 (MLflow's artifacts)."""
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
                "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": self.endpoint,
                "MLFLOW_S3_ENDPOINT_URL": self.endpoint}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        paginator = self.client().get_paginator("list_objects_v2")
        return [o["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix) for o in page.get("Contents", [])]


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """moto's S3 server on a free loopback port, requests checked against its IAM: three unsigned calls make a
    user allowed everything and its access key (a secret moto draws at random), after which a request signed
    with any other secret is refused (SignatureDoesNotMatch), as AWS would."""
    try:
        import boto3
        import moto  # noqa: F401  (the server's package: moto[server])
    except ImportError:
        pytest.skip("moto[server] not installed (the dev extra has it)")
    folder = tmp_path_factory.mktemp("s3")
    port, log = free_port(), folder / "moto.log"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        env.pop(name, None)
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{endpoint}/moto-api/", server, "moto's S3 server", log)
        iam = boto3.client("iam", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="bootstrap",
                           aws_secret_access_key="bootstrap")
        iam.create_user(UserName="xgrid")
        iam.put_user_policy(UserName="xgrid", PolicyName="everything", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="xgrid")["AccessKey"]
        s3 = S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"], log=log)
        for bucket in s3.buckets:
            s3.client().create_bucket(Bucket=bucket)
        yield s3
    finally:
        stop(server)


# --- mlflow server ------------------------------------------------------------------------------------------
@dataclass
class MlflowStack:
    url: str
    backend_store_uri: str
    artifacts_destination: str
    postgres: Postgres
    s3: S3Server
    log: Path
    command: list[str] = field(default_factory=list)


def mlflow_server_command(backend_store_uri: str, artifacts_destination: str, port: int) -> list[str]:
    """docker/compose.yaml's `mlflow` command, on loopback."""
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri, "--serve-artifacts",
            "--artifacts-destination", artifacts_destination, "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1"]


@pytest.fixture(scope="module")
def mlflow_stack(postgres, s3_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow-server")
    port, log = free_port(), folder / "mlflow-server.log"
    backend, artifacts = postgres.uri("psycopg"), f"s3://{ARTIFACT_BUCKET}/"
    command = mlflow_server_command(backend, artifacts, port)
    env = {**os.environ, **s3_server.env()}
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(log, "w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=folder,
                                  start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", server, "mlflow server (PostgreSQL + S3)", log)
        yield MlflowStack(url, backend, artifacts, postgres, s3_server, log, command)
    finally:
        stop(server)
