"""The MLflow `RunReader`: finds a search's experiment and returns its runs as `RunRecord`s, every page.

Reading never creates anything: MLflow would silently create a SQLite store that does not exist, so a missing
one is a NotFoundError here.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlflow import MlflowClient

from xgrid import tracking_schema as schema
from xgrid.tracking.base import Experiment, NotFoundError, RunRecord
from xgrid.tracking.mlflow_errors import translated

_PAGE = 5000


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:"):
        return None
    parsed = urlparse(uri)
    path = unquote(parsed.path)
    if not path or path == "/:memory:":
        return None
    # sqlite:///relative.db -> path "/relative.db"; sqlite:////abs.db -> "//abs.db": drop one slash
    return Path(path[1:])


def open_client(tracking_uri: str | None) -> MlflowClient:
    """An MlflowClient for the URI; a SQLite store that does not exist is an error (MLflow would create it)."""
    if tracking_uri:
        db = _sqlite_path(tracking_uri)
        if db is not None and not db.is_file():
            raise NotFoundError(f"no MLflow store at {db} (tracking URI {tracking_uri}); pass --tracking-uri, "
                                "or run `xgrid search` first")
    return MlflowClient(tracking_uri=tracking_uri)


def _all_experiment_names(client: MlflowClient) -> list[str]:
    names, token = [], None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        names += [e.name for e in page]
        token = page.token
        if not token:
            return names


def find_experiment(client: MlflowClient, experiment: str):
    """The experiment by name, or by id when `experiment` is numeric; NotFoundError with a did-you-mean if none."""
    found = client.get_experiment_by_name(experiment)
    if found is None and experiment.isdigit():
        try:
            found = client.get_experiment(experiment)
        except Exception:  # MlflowException RESOURCE_DOES_NOT_EXIST
            found = None
    if found is not None and found.lifecycle_stage == "deleted":
        raise NotFoundError(f"experiment {experiment!r} is deleted (restore it with `mlflow experiments restore`)")
    if found is not None:
        return found
    names = _all_experiment_names(client)
    close = difflib.get_close_matches(experiment, names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(n) for n in close)}?" if close else ""
    listed = ", ".join(repr(n) for n in sorted(names)[:20]) + (" ..." if len(names) > 20 else "")
    raise NotFoundError(f"no MLflow experiment {experiment!r}{hint} (existing: {listed or 'none'})")


def search_all_runs(client: MlflowClient, experiment_id: str, filter_string: str = "") -> list:
    """Every active run matching the filter, all pages."""
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=_PAGE, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _stage_filter(stage: str) -> str:
    return f"tags.{schema.STAGE} = '{stage}'"


def _record(run) -> RunRecord:
    return RunRecord(run.info.run_id, run.info.status, dict(run.data.tags), dict(run.data.metrics),
                     dict(run.data.params), run.info.start_time or None, run.info.end_time or None)


class MlflowReader:
    @translated()
    def __init__(self, tracking_uri: str | None):
        self.tracking_uri = tracking_uri
        self.client = open_client(tracking_uri)

    @translated()
    def find_experiment(self, experiment: str) -> Experiment:
        found = find_experiment(self.client, experiment)
        return Experiment(found.experiment_id, found.name)

    @translated()
    def stage_runs(self, experiment_id: str, stage: str) -> list[RunRecord]:
        return [_record(run) for run in search_all_runs(self.client, experiment_id, _stage_filter(stage))]

    @translated()
    def find_parent_run(self, experiment_id: str) -> str | None:
        parents = search_all_runs(self.client, experiment_id, _stage_filter(schema.SEARCH_STAGE))
        if not parents:
            return None
        return max(parents, key=lambda r: (r.info.start_time or 0, r.info.run_id)).info.run_id
