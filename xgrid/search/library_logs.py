"""The libraries' own log lines (Ray, Tune, Optuna, MLflow, alembic, Hugging Face, Python warnings) go to the
search folder's `search.log`, not into the live progress.

Each of these libraries installs its own stderr handler on its logger, so silencing the root logger is not
enough: while a capture is on, each named logger's handlers are replaced by one buffer, which is written to
the log file once the search folder exists (lines from before, such as Ray's start-up warnings, included).
Everything is put back as it was when the capture ends. Warnings and errors that stop a search still reach
the user through xgrid's own messages."""

from __future__ import annotations

import importlib
import logging
import logging.handlers
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from xgrid.redaction import redact

LIBRARIES = ("ray", "optuna", "mlflow", "alembic", "urllib3", "filelock", "fsspec", "datasets", "transformers",
             "huggingface_hub", "torch", "py.warnings")
LOG_NAME = "search.log"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactingFormatter(logging.Formatter):
    """Library lines can carry a tracking URI with its password (MLflow, SQLAlchemy) or an environment value
    (Ray prints runtime environments): the file gets them masked, like everything else xgrid writes."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class LibraryLog:
    """What a capture holds: the buffered records until `write_to` names the file."""

    def __init__(self) -> None:
        self.buffer = logging.handlers.MemoryHandler(capacity=10_000, flushLevel=logging.CRITICAL + 1)
        self.path: Path | None = None

    def write_to(self, path: Path) -> None:
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(RedactingFormatter(FORMAT))
        self.path = path
        self.buffer.setTarget(handler)
        self.buffer.flush()
        self.buffer.capacity = 1  # from now on, each record is written when it comes

    def close(self) -> None:
        self.buffer.flush()
        target = self.buffer.target
        self.buffer.close()
        if target is not None:
            target.close()


def _settle_library_loggers() -> None:
    """Make each library install its handlers now: Ray and MLflow configure their loggers when imported, Optuna,
    transformers and datasets on their first `get_logger`. Done later, inside the capture, that would put a
    stderr handler back beside the buffer."""
    import mlflow  # noqa: F401
    import optuna
    import ray  # noqa: F401

    optuna.logging.get_logger("optuna")
    for module in ("transformers.utils.logging", "datasets.utils.logging"):
        try:
            importlib.import_module(module).get_logger()
        except ImportError:
            pass


@contextmanager
def library_logs() -> Iterator[LibraryLog]:
    _settle_library_loggers()
    log = LibraryLog()
    saved = []
    for name in LIBRARIES:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate))
        logger.handlers[:] = [log.buffer]
        logger.propagate = False
    logging.captureWarnings(True)  # warnings.warn(...) in the driver -> the "py.warnings" logger -> the file
    try:
        yield log
    finally:
        logging.captureWarnings(False)
        for logger, handlers, propagate in saved:
            logger.handlers[:] = handlers
            logger.propagate = propagate
        log.close()
