"""MLflow's exceptions turned into `TrackingError`, so callers of the MLflow writer and reader catch one type
whatever the backend (a server that cannot be reached, a store of another MLflow version ...). A store that did
not answer is an `UnreachableError`, which the tracking queue retries; anything else is final for that call."""

from __future__ import annotations

from contextlib import contextmanager

import requests
from mlflow.exceptions import MlflowException

from xgrid.tracking.base import TrackingError, UnreachableError

# HTTP statuses that say "not now" rather than "not this": rate limits and a proxy with no server behind it.
# A plain 500 is left out: MLflow answers 500 to requests it can never serve, and retrying those forever would
# wedge the queue.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
LOCKED = "database is locked"  # SQLite: another process holds the write lock; it is released in moments


def _chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def is_unreachable(err: BaseException) -> bool:
    """Whether `err` (or what caused it) says the store did not answer, so the same call may work later."""
    for e in _chain(err):
        if isinstance(e, requests.HTTPError):
            status = getattr(e.response, "status_code", None)
            if status is not None:
                return status in RETRY_STATUSES
        if isinstance(e, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema)):
            return False
        if isinstance(e, (requests.RequestException, ConnectionError, TimeoutError)):
            return True
        if isinstance(e, MlflowException) and e.get_http_status_code() in RETRY_STATUSES:
            return True
        if LOCKED in str(e):
            return True
    return False


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


@contextmanager
def translated():
    """Context manager (and decorator): an MlflowException (or an HTTP error of MLflow's artifact client) leaves
    as a TrackingError with its first line; an UnreachableError when the store did not answer."""
    try:
        yield
    except (MlflowException, requests.RequestException) as err:
        kind = UnreachableError if is_unreachable(err) else TrackingError
        raise kind(_first_line(err)) from err
