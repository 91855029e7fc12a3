"""The MLflow `RunWriter`: runs of one experiment through `MlflowClient`, which works the same against a local
SQLite store and a tracking server (the search's driver is the only process that writes its runs; two searches
may share a store)."""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag, ViewType

from xgrid.tracking.base import EndStatus, TrackingError
from xgrid.tracking.mlflow_errors import translated


def local_artifact_location(tracking_uri: str | None, experiment: str) -> str | None:
    """Artifacts of a local SQLite store live beside the database. MLflow's own default is ./mlruns relative
    to whatever folder the search was started from; a tracking server decides for itself (None)."""
    if not (tracking_uri or "").startswith("sqlite:///"):
        return None
    folder = Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts" / experiment
    return folder.absolute().as_uri()


# The tracking URI schemes MLflow's stores take (a `+driver` suffix, as in postgresql+psycopg, is allowed).
SCHEMES = ("", "file", "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def check_tracking_uri(tracking_uri: str | None, timeout: float = 5.0) -> None:
    """Before anything starts: a URI MLflow cannot use, a server that does not answer within `timeout` seconds
    (MLflow's own client would retry for minutes), or a local store whose folder cannot be made is a
    TrackingError naming the problem. Creates and writes nothing."""
    import urllib.error
    import urllib.parse
    import urllib.request

    if not tracking_uri:
        return
    scheme = urllib.parse.urlparse(tracking_uri).scheme.split("+")[0]
    if len(scheme) == 1:  # a Windows drive letter: a plain path
        scheme = ""
    if scheme not in SCHEMES:
        raise TrackingError(f"unsupported scheme {scheme!r}: MLflow takes sqlite:///PATH, http(s)://HOST:PORT, "
                            "postgresql://..., mysql://... or a folder")
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(_health_request(tracking_uri), timeout=timeout):
                return
        except urllib.error.HTTPError:
            return  # something answers (a proxy asking for credentials, an old server): MLflow will tell
        except (OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise TrackingError(f"no MLflow server answers there ({reason})") from None
    if scheme in ("", "file", "sqlite"):
        path = Path({"sqlite": tracking_uri.removeprefix("sqlite:///"), "file": urllib.parse.urlparse(tracking_uri).path,
                     "": tracking_uri}[scheme])
        folder = path.parent if scheme == "sqlite" else path
        existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise TrackingError(f"{existing} is a file, so the store's folder {folder} cannot be made")
        if scheme == "sqlite" and path.is_dir():
            raise TrackingError(f"{path} is a folder, not an SQLite database file")
    if scheme in ("postgresql", "mysql", "mssql"):
        check_sql_driver(tracking_uri)


def _health_request(tracking_uri: str):
    """The server's /health, asked with the URI's user and password (http://user:TOKEN@host) as basic auth, as
    MLflow's own client sends them: urllib would take `user:TOKEN@host` for a host name."""
    import base64
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(tracking_uri.rstrip("/"))
    if parts.username is None and parts.password is None:
        return f"{tracking_uri.rstrip('/')}/health"
    netloc = parts.hostname or ""
    netloc = f"[{netloc}]" if ":" in netloc else netloc
    if parts.port is not None:
        netloc += f":{parts.port}"
    url = urllib.parse.urlunsplit((parts.scheme, netloc, f"{parts.path}/health", "", ""))
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})


# What to install for a SQLAlchemy database driver that is missing (`postgresql+DRIVER://`). A plain
# `postgresql://` is SQLAlchemy's default driver: psycopg 3 under SQLAlchemy 2.1, psycopg2 under 2.0; xgrid's
# documented form names the driver, `postgresql+psycopg://` (the `postgres` extra installs it).
DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "pg8000": "pg8000",
                   "asyncpg": "asyncpg", "mysqldb": "mysqlclient", "pymysql": "pymysql",
                   "mysqlconnector": "mysql-connector-python", "pyodbc": "pyodbc", "pymssql": "pymssql"}


def check_sql_driver(tracking_uri: str) -> None:
    """A database URI whose SQLAlchemy dialect or driver cannot be loaded here is a TrackingError naming the
    driver and the package that provides it (MLflow itself would fail later, deep inside SQLAlchemy). The
    caller prefixes the URI; every message is redacted where it is printed."""
    try:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError
    except ImportError:  # MLflow's SQL stores need SQLAlchemy: without it MLflow says so itself
        return
    try:
        dialect = make_url(tracking_uri).get_dialect()
    except NoSuchModuleError:
        backend, _, driver = tracking_uri.split("://", 1)[0].partition("+")
        raise TrackingError(f"SQLAlchemy has no driver {driver!r} for {backend}: write {backend}://... for its "
                            f"default driver or name an installed one (e.g. {_example(backend)})") from None
    except (ArgumentError, ValueError) as err:  # ValueError: a port that is not a number
        raise TrackingError(f"not a database URI SQLAlchemy can read ({str(err).splitlines()[0]})") from None
    try:
        dialect.import_dbapi()
    except ImportError as err:
        package = DRIVER_PACKAGES.get(dialect.driver, dialect.driver)
        named = "+" in tracking_uri.split("://", 1)[0]
        which = (f"the database driver {dialect.driver!r} it names" if named else
                 f"SQLAlchemy's default driver for {dialect.name}://, {dialect.driver!r},")
        raise TrackingError(f"{which} is not installed here ({err}): pip install '{package}'") from None


def _example(backend: str) -> str:
    return {"postgresql": "postgresql+psycopg://USER@HOST:5432/DB, with pip install 'psycopg[binary]'",
            "mysql": "mysql+pymysql://USER@HOST:3306/DB, with pip install pymysql",
            "mssql": "mssql+pyodbc://USER@DSN, with pip install pyodbc"}.get(backend, f"{backend}+DRIVER://")


# MLflow's HTTP client retries a request that gets no answer 7 times with a growing backoff and waits up to
# 120 s for each answer: about 4 minutes per call against a dead server. xgrid's writer runs in the tracking
# queue's thread, which has its own backoff and keeps what it could not write (xgrid.tracking.queued), so a call
# should fail in seconds. MLflow reads these from the environment at every request and has no per-client
# setting, so they are set for this process (only where the user has not set them: their values win), when a
# writer for a tracking server is opened. (MLflow's documented MLFLOW_HTTP_REQUEST_MAX_RETRIES and
# MLFLOW_HTTP_REQUEST_TIMEOUT; a slow artifact upload still gets its 60 s.)
# MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT: MLflow's client writes "View run NAME at: <tracking URI>/#/..." straight
# to sys.stdout for every run ended on a server, bypassing xgrid's redacted console: a password in the URI would
# reach the terminal and the job's log, and one line per trial would break into the live progress. xgrid prints
# where the runs are itself, in the summary.
HTTP_CLIENT_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
                        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


def sqlite_path(tracking_uri: str | None) -> Path | None:
    """The database file of a `sqlite:///PATH` URI (None for any other URI or an in-memory database)."""
    if not (tracking_uri or "").startswith("sqlite:///") or tracking_uri.endswith(":memory:"):
        return None
    return Path(tracking_uri.removeprefix("sqlite:///"))


@contextmanager
def store_lock(tracking_uri: str | None):
    """Holds an exclusive lock on `<database>.lock` beside a SQLite store (nothing for other stores). Two
    processes opening a new store at once would both run MLflow's schema migrations on it, and one dies with an
    alembic traceback; two creating one experiment at once, one gets "already exists". The lock is released when
    the process dies, so a killed search never leaves it held."""
    db = sqlite_path(tracking_uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class MlflowWriter:
    """Writes into `experiment` (by name), created on first use with its artifacts beside a local store."""

    @translated()
    def __init__(self, tracking_uri: str | None, experiment: str):
        if (tracking_uri or "").startswith(("http://", "https://")):
            for name, value in HTTP_CLIENT_SETTINGS.items():
                os.environ.setdefault(name, value)
        self.tracking_uri = tracking_uri
        with store_lock(tracking_uri):  # the client creates (migrates) a new SQLite store
            self.client = MlflowClient(tracking_uri)
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id: str = found.experiment_id if found else self.client.create_experiment(
                experiment, artifact_location=local_artifact_location(tracking_uri, experiment))

    @staticmethod
    def clock_ms() -> int:
        """Now, by MLflow's own clock (the one it stamps runs with when given no time)."""
        from mlflow.utils.time import get_current_time_millis

        return get_current_time_millis()

    @translated()
    def create_run(self, name: str, tags: dict[str, str], timestamp_ms: int | None = None) -> str:
        return self.client.create_run(self.experiment_id, start_time=timestamp_ms, run_name=name,
                                      tags=tags).info.run_id

    @translated()
    def find_run_by_tag(self, key: str, value: str) -> str | None:
        """The id of a run of the experiment whose tag `key` is `value` (any status), None when there is none."""
        quoted = value.replace("'", "\\'")
        runs = self.client.search_runs([self.experiment_id], f"tags.`{key}` = '{quoted}'", max_results=1,
                                       run_view_type=ViewType.ALL)  # a deleted run also counts
        return runs[0].info.run_id if runs else None

    @translated()
    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0,
                    timestamp_ms: int | None = None) -> None:
        now = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    @translated()
    def write_batch(self, run_id: str, metrics: list[tuple[dict[str, float], int, int | None]],
                    params: dict[str, str], tags: dict[str, str]) -> None:
        """Several calls' writes to one run as one request (`QueuedWriter` merges what waits in its queue):
        `metrics` is each log_metrics call's (metrics, step, timestamp_ms)."""
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, v, now if at is None else at, step)
                                               for values, step, at in metrics for k, v in values.items()],
                              params=[Param(k, v) for k, v in params.items()],
                              tags=[RunTag(k, str(v)) for k, v in tags.items()])

    @translated()
    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        self.client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])

    @translated()
    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        # One request (one transaction in a SQL store) for all of them, not one per tag.
        if tags:
            self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    @translated()
    def log_artifact(self, run_id: str, path: str | Path, folder: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), folder)

    @translated()
    def end_run(self, run_id: str, status: EndStatus, timestamp_ms: int | None = None) -> None:
        self.client.set_terminated(run_id, status, end_time=timestamp_ms)

    @translated()
    def reopen_run(self, run_id: str) -> None:
        """A terminated run RUNNING again (a resumed search continues its parent run)."""
        self.client.update_run(run_id, status="RUNNING")
