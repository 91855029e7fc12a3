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


def _sql_store(client: MlflowClient):
    """MLflow's SQLAlchemy store behind the client (sqlite:, postgresql:, mysql: ... URIs), None for any other
    (a tracking server, a folder)."""
    try:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = client._tracking_client.store
    except Exception:  # another MLflow layout: the client's own search serves
        return None
    return store if isinstance(store, SqlAlchemyStore) else None


def sql_stage_runs(store, experiment_id: str, stage: str) -> list[RunRecord]:
    """The active runs of one stage (tag `stage`), straight from the store's tables with MLflow's own table
    models: what `search_runs` returns (the same runs, latest metrics, params and tags, in its order: start time
    descending, then run id), in four plain queries. `search_runs` builds an ORM object for every tag, param and
    metric of every run, which at 10,000 runs costs most of a minute."""
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlParam, SqlRun, SqlTag
    from sqlalchemy import select

    in_stage = select(SqlTag.run_uuid).where(SqlTag.key == schema.STAGE, SqlTag.value == stage)
    chosen = (SqlRun.experiment_id == int(experiment_id), SqlRun.lifecycle_stage == "active",
              SqlRun.run_uuid.in_(in_stage))
    ids = select(SqlRun.run_uuid).where(*chosen)
    with store.ManagedSessionMaker() as session:
        runs = session.execute(select(SqlRun.run_uuid, SqlRun.status, SqlRun.start_time, SqlRun.end_time)
                               .where(*chosen).order_by(SqlRun.start_time.desc(), SqlRun.run_uuid)).all()
        tags: dict[str, dict[str, str]] = {run_id: {} for run_id, *_ in runs}
        metrics: dict[str, dict[str, float]] = {run_id: {} for run_id, *_ in runs}
        params: dict[str, dict[str, str]] = {run_id: {} for run_id, *_ in runs}
        for run_id, key, value in session.execute(select(SqlTag.run_uuid, SqlTag.key, SqlTag.value)
                                                  .where(SqlTag.run_uuid.in_(ids))):
            tags[run_id][key] = value
        for run_id, key, value, is_nan in session.execute(
                select(SqlLatestMetric.run_uuid, SqlLatestMetric.key, SqlLatestMetric.value, SqlLatestMetric.is_nan)
                .where(SqlLatestMetric.run_uuid.in_(ids))):
            metrics[run_id][key] = float("nan") if is_nan else value  # as SqlLatestMetric.to_mlflow_entity
        for run_id, key, value in session.execute(select(SqlParam.run_uuid, SqlParam.key, SqlParam.value)
                                                  .where(SqlParam.run_uuid.in_(ids))):
            params[run_id][key] = value
    return [RunRecord(run_id, status, tags[run_id], metrics[run_id], params[run_id], start or None, end or None)
            for run_id, status, start, end in runs]


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
        store = _sql_store(self.client)
        if store is not None:
            return sql_stage_runs(store, experiment_id, stage)
        return [_record(run) for run in search_all_runs(self.client, experiment_id, _stage_filter(stage))]

    @translated()
    def find_parent_run(self, experiment_id: str) -> str | None:
        parents = search_all_runs(self.client, experiment_id, _stage_filter(schema.SEARCH_STAGE))
        if not parents:
            return None
        return max(parents, key=lambda r: (r.info.start_time or 0, r.info.run_id)).info.run_id
