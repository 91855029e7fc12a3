"""MLflow's exceptions turned into `TrackingError`, so callers of the MLflow writer and reader catch one type
whatever the backend (a server that cannot be reached, a store of another MLflow version ...)."""

from __future__ import annotations

from contextlib import contextmanager

from mlflow.exceptions import MlflowException

from xgrid.tracking.base import TrackingError


@contextmanager
def translated():
    """Context manager (and decorator): an MlflowException leaves as a TrackingError with its first line."""
    try:
        yield
    except MlflowException as err:
        lines = str(err).strip().splitlines()
        raise TrackingError(lines[0] if lines else type(err).__name__) from err
