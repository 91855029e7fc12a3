"""The MLflow `RunWriter`: runs of one experiment through `MlflowClient`, which works the same against a local
SQLite store and a tracking server (the search's driver is the only process that writes)."""

from __future__ import annotations

import time
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from xgrid.tracking.base import EndStatus, TrackingError
from xgrid.tracking.mlflow_errors import translated


def local_artifact_location(tracking_uri: str | None, experiment: str) -> str | None:
    """Artifacts of a local SQLite store live beside the database. MLflow's own default is ./mlruns relative
    to whatever folder the search was started from; a tracking server decides for itself (None)."""
    if not (tracking_uri or "").startswith("sqlite:///"):
        return None
    folder = Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts" / experiment
    return folder.absolute().as_uri()


# The tracking URI schemes MLflow's stores take (a `+driver` suffix, as in postgresql+psycopg2, is allowed).
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
            with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout):
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


class MlflowWriter:
    """Writes into `experiment` (by name), created on first use with its artifacts beside a local store."""

    @translated()
    def __init__(self, tracking_uri: str | None, experiment: str):
        self.client = MlflowClient(tracking_uri)
        self.tracking_uri = tracking_uri
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id: str = found.experiment_id if found else self.client.create_experiment(
            experiment, artifact_location=local_artifact_location(tracking_uri, experiment))

    @translated()
    def create_run(self, name: str, tags: dict[str, str]) -> str:
        return self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id

    @translated()
    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    @translated()
    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        self.client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])

    @translated()
    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)

    @translated()
    def log_artifact(self, run_id: str, path: str | Path, folder: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), folder)

    @translated()
    def end_run(self, run_id: str, status: EndStatus) -> None:
        self.client.set_terminated(run_id, status)
