"""Two searches starting at once on one new SQLite store: both open it (MLflow migrates a new database's schema,
and two migrations at once leave one process with an alembic traceback) and share one experiment."""

from __future__ import annotations

import multiprocessing

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ~3 min on 2 shared CPUs: 20 new stores

REPETITIONS = 10
WAIT = 120  # seconds: a hang guard


def _open_stores(root: str, barrier, results) -> None:
    from xgrid.tracking.mlflow_writer import MlflowWriter

    for i in range(REPETITIONS):
        barrier.wait(WAIT)  # both processes open the same new store at the same moment
        try:
            writer = MlflowWriter(f"sqlite:///{root}/{i}/mlflow.db", "space")
            results.put((i, writer.experiment_id))
        except Exception as err:  # the test reports it
            results.put((i, f"{type(err).__name__}: {err}"))


def test_two_processes_open_one_new_store_at_once(tmp_path):
    from mlflow import MlflowClient

    context = multiprocessing.get_context("spawn")  # a clean interpreter each, as two `xgrid search` are
    barrier, results = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_open_stores, args=(str(tmp_path), barrier, results)) for _ in range(2)]
    for process in processes:
        process.start()
    answers = [results.get(timeout=WAIT) for _ in range(2 * REPETITIONS)]
    for process in processes:
        process.join(WAIT)
        assert process.exitcode == 0
    for i in range(REPETITIONS):
        ids = [answer for rep, answer in answers if rep == i]
        assert len(ids) == 2 and ids[0] == ids[1] and ids[0].isdigit(), ids  # both opened it, one experiment
        names = [e.name for e in MlflowClient(f"sqlite:///{tmp_path}/{i}/mlflow.db").search_experiments()]
        assert sorted(names) == ["Default", "space"]
