"""Tracking of a search, behind two small interfaces (`xgrid.tracking.base`): the search writes through
`open_writer` (whose writes are queued, `xgrid.tracking.queued`: no call waits on the store), `xgrid compare`
reads through `open_reader`. The listener that turns search events into runs is
`xgrid.tracking.listener.TrackingListener`.

A backend is a writer class and a reader class; `BACKENDS` says which one serves a tracking URI. Backends are
imported only when opened, so importing this package never imports a tracking library.
"""

from __future__ import annotations

from importlib import import_module
from typing import NamedTuple

from xgrid.tracking.base import (ACTIVE_STATUSES, FAILED, FINISHED, KILLED, Experiment, NotFoundError,
                                 RunReader, RunRecord, RunWriter, TrackingError, UnreachableError)
from xgrid.tracking.queued import QueuedWriter, flush_writers

__all__ = ["ACTIVE_STATUSES", "BACKENDS", "Backend", "FAILED", "FINISHED", "KILLED", "Experiment",
           "NotFoundError", "QueuedWriter", "RunReader", "RunRecord", "RunWriter", "TrackingError",
           "UnreachableError", "check_uri", "open_reader", "open_writer"]


class Backend(NamedTuple):
    prefix: str  # serves the tracking URIs that start with it; "" serves every URI, None included
    writer: str  # "module:Class" of its RunWriter, constructed as Class(tracking_uri, experiment)
    reader: str  # "module:Class" of its RunReader, constructed as Class(tracking_uri)
    check: str = ""  # "module:function" raising TrackingError for a URI it cannot use, writing nothing ("": none)


# The first backend whose prefix the URI starts with wins. MLflow serves sqlite:, http(s):, file:, postgresql: ...
BACKENDS: list[Backend] = [
    Backend("", "xgrid.tracking.mlflow_writer:MlflowWriter", "xgrid.tracking.mlflow_reader:MlflowReader",
            "xgrid.tracking.mlflow_writer:check_tracking_uri"),
]


def _backend(tracking_uri: str | None) -> Backend:
    return next(b for b in BACKENDS if (tracking_uri or "").startswith(b.prefix))


def _load(target: str):
    module, _, name = target.partition(":")
    return getattr(import_module(module), name)


def check_uri(tracking_uri: str | None) -> None:
    """Fails fast (TrackingError) on a tracking URI its backend cannot use; creates nothing. For the start of a
    search, before Ray, the search folder or an experiment exist."""
    check = _backend(tracking_uri).check
    if check:
        _load(check)(tracking_uri)


def open_writer(tracking_uri: str | None, experiment: str) -> QueuedWriter:
    """A writer into `experiment` (by name, created when missing) of the store at `tracking_uri` (None: the
    backend's default). The store is reached now (a TrackingError when it cannot be); every write after that
    is queued: the caller never waits, and `close()` at the end writes what is left (see QueuedWriter)."""
    return QueuedWriter(_load(_backend(tracking_uri).writer)(tracking_uri, experiment))


def open_reader(tracking_uri: str | None) -> RunReader:
    """A reader of the store at `tracking_uri` (None: the backend's default); NotFoundError when a local store
    does not exist. It sees what this process wrote before: the queued writes to that store are waited for."""
    flush_writers(tracking_uri)
    return _load(_backend(tracking_uri).reader)(tracking_uri)
