"""A `RunWriter` that never makes its caller wait on the store: every call returns at once and one background
thread performs them in order against the backend's writer. A search's writes come from Tune's event loop, and
a tracking server that stops answering must not stop the trials (MLflow's own client would hold each call for
minutes).

What is not written yet is kept in a journal, `tracking-journal/journal.jsonl` in the search folder once
`use_folder` names it (in a temporary folder before): each call is a line written before it is performed, then
a line when it is done (or refused), so a later process replays exactly what is left. A file to log as an
artifact is copied into the journal when the call is made (the search may rewrite it before the store answers).
While the store does not answer, the thread retries with a growing wait; when it answers again the queue
drains. `use_folder` on a folder whose journal a previous process left replays what that process could not
write: that is how `xgrid search --resume` completes the tracking of a search.

`create_run` returns a local id at once (`local-<32 hex>`), which every later call, and every tag value, may
use; the thread maps it to the store's id, and the journal keeps the map, so a local id handed out by an earlier
process works in this one after `use_folder`. Each run is tagged with its local id: a create_run retried after
its answer was lost finds the run it made instead of making a second one (when the backend writer has
`find_run_by_tag`).

A call the store refuses (a bad request, a param already logged with another value) is recorded as failed in
the journal with its error and the queue moves on. Only `UnreachableError` (the store did not answer) is
retried.

Metrics, params and tags of one run that wait in the queue one after the other are written as one request when
the backend writer has `write_batch` (MLflow's `log_batch`): each request to a SQL store is a transaction whose
ORM work costs the driver ~10 ms, and at thousands of trials the queue has a backlog of them. Each call still
gets its own journal line; a merged request the store refuses is performed again one call at a time, so only the
call at fault is recorded as failed.
"""

from __future__ import annotations

import atexit
import inspect
import json
import logging
import re
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections import deque
from pathlib import Path
from typing import Any

from xgrid.redaction import redact, redact_mapping
from xgrid.tracking.base import RunWriter, TrackingError, UnreachableError

JOURNAL_DIR = "tracking-journal"
JOURNAL_FILE = "journal.jsonl"
FILES_DIR = "files"
LOCAL_ID_TAG = "xgrid.local_run_id"
LOCAL_ID = re.compile(r"local-[0-9a-f]{32}")
CLOSE_TIMEOUT = 60.0  # a search's end waits this long for a store that does not answer, then leaves the journal
FLUSH_TIMEOUT = 30.0  # a reader in the writing process waits this long for the writes before it (see flush_writers)
FIRST_WAIT, LONGEST_WAIT = 0.5, 15.0  # seconds between retries while the store does not answer: doubling, capped
# Methods of a backend writer that are not writes: the queue calls them itself, or they are its own.
NOT_QUEUED = frozenset({"find_run_by_tag", "clock_ms", "use_folder", "close", "flush", "write_batch"})
MERGED = frozenset({"log_metrics", "log_params", "set_tags"})  # what `write_batch` writes, several at once
MERGE_LIMIT = 64  # calls in one merged request (MLflow's client splits what exceeds its own per-request limits)

log = logging.getLogger(__name__)
_LIVE: "weakref.WeakSet[QueuedWriter]" = weakref.WeakSet()


class QueuedWriter:
    """Wraps `inner` (a backend's writer, already connected): the same methods, performed by a thread."""

    def __init__(self, inner: RunWriter):
        self.inner = inner
        self.tracking_uri = inner.tracking_uri
        self.experiment_id = inner.experiment_id
        self.failed: list[dict[str, Any]] = []  # calls the store refused: {"method", "error"}
        self.unreachable: str | None = None  # why the store does not answer, while it does not; None when it does
        self._cond = threading.Condition()
        self._queue: deque[dict[str, Any]] = deque()  # what is not done yet, in order; the first may be in flight
        self._ids: dict[str, str] = {}  # local run id -> the store's
        self._dir: Path | None = None  # the journal's folder, made on the first write
        self._temporary = True  # the journal's folder is not a search folder's (no use_folder yet)
        self._thread: threading.Thread | None = None
        self._stop = False
        self._closed = False
        self._in_flight: dict[str, Any] | None = None
        _LIVE.add(self)

    # --- what the caller sees ---------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """How many writes are not done yet (still queued, or waiting for the store)."""
        with self._cond:
            return len(self._queue)

    @property
    def journal(self) -> Path | None:
        """The journal file, once anything was written (None before)."""
        return None if self._dir is None else self._dir / JOURNAL_FILE

    def real_id(self, run_id: str) -> str:
        """The store's id of a run `create_run` returned; the id itself while its run is not created yet (or when
        it is not a local id)."""
        with self._cond:
            return self._ids.get(run_id, run_id)

    def create_run(self, name: str, tags: dict[str, str], **kwargs: Any) -> str:
        local_id = f"local-{uuid.uuid4().hex}"
        self._call("create_run", (name, {**tags, LOCAL_ID_TAG: local_id}), kwargs, local_id=local_id)
        return local_id

    def __getattr__(self, name: str):
        # Only what the class does not define lands here: every method of the backend writer becomes a queued
        # call (so a method added to the writers later is queued too), other attributes are the backend's.
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self.inner, name)
        if not callable(value) or name in NOT_QUEUED:
            return value

        def queued(*args: Any, **kwargs: Any) -> None:
            self._call(name, args, kwargs)

        queued.__name__ = queued.__qualname__ = name
        queued.__doc__ = getattr(value, "__doc__", None)
        return queued

    def flush(self, timeout: float = FLUSH_TIMEOUT) -> int:
        """Wait (at most `timeout` seconds) until every write so far is done; returns how many are still pending."""
        with self._cond:
            self._cond.wait_for(lambda: not self._queue, timeout)
            return len(self._queue)

    def close(self, timeout: float | None = None) -> int:
        """The end of the search: write what can be written within `timeout` seconds (CLOSE_TIMEOUT when None),
        then stop the thread.
        Returns how many writes are still pending: they stay in the journal (`journal`) for a later `use_folder`
        on the same folder. A call made after close starts the thread again."""
        with self._cond:
            self._closed = True
            self._cond.wait_for(lambda: not self._queue, CLOSE_TIMEOUT if timeout is None else timeout)
            self._stop = True
            self._cond.notify_all()
            left = len(self._queue)
            if not left and self._in_flight is None and self._dir is not None:
                shutil.rmtree(self._dir if self._temporary else self._dir / FILES_DIR, ignore_errors=True)
                if self._temporary:
                    self._dir = None
            if left:
                log.warning("%d tracking writes are pending in %s (%s)", left, self.journal, self.unreachable)
            return left

    def use_folder(self, path: str | Path) -> None:
        """Keep the journal in the search folder `path` from now on; replay first what a previous process left
        pending there."""
        target = Path(path) / JOURNAL_DIR
        with self._cond:
            if self._dir == target:
                return
            target.mkdir(parents=True, exist_ok=True)
            left, ids = read_journal(target / JOURNAL_FILE)
            for op in left:
                op["retry"] = True  # that process may have performed it without writing that it had
            mine = list(self._queue)
            if self._dir is not None and (self._dir / FILES_DIR).is_dir():
                shutil.copytree(self._dir / FILES_DIR, target / FILES_DIR, dirs_exist_ok=True)
            with open(target / JOURNAL_FILE, "a", encoding="utf-8") as journal:
                if journal.tell() and not (target / JOURNAL_FILE).read_bytes().endswith(b"\n"):
                    journal.write("\n")  # the end of a line a killed process did not finish
                if self._ids:
                    journal.write(_line({"ids": self._ids}))
                for op in mine:
                    journal.write(_line({"op": _public(op)}))
            if self._temporary and self._dir is not None and self._in_flight is None:
                shutil.rmtree(self._dir, ignore_errors=True)
            self._dir, self._temporary = target, False
            self._ids = ids | self._ids
            self._queue = deque(left + mine)  # an op in flight stays where it is: the thread removes it by identity
            if self._queue:
                self._start()

    # --- the caller's side of the queue ----------------------------------------------------------------------
    def _call(self, method: str, args: tuple, kwargs: dict[str, Any], local_id: str | None = None) -> None:
        signature = inspect.signature(getattr(self.inner, method))
        arguments = dict(signature.bind(*args, **kwargs).arguments)  # a wrong call fails here, in the caller
        if "timestamp_ms" in signature.parameters and arguments.get("timestamp_ms") is None:
            clock = getattr(self.inner, "clock_ms", None)
            arguments["timestamp_ms"] = clock() if clock else int(time.time() * 1000)
        op: dict[str, Any] = {"id": uuid.uuid4().hex, "method": method}
        if local_id:
            op["local_id"] = local_id
        with self._cond:
            folder = self._folder()
            files = {}
            for name, value in arguments.items():
                if isinstance(value, Path) or (name == "path" and isinstance(value, str)):
                    arguments[name] = str(value)
                    if Path(value).is_file():  # copied now: the search may rewrite it before the store answers
                        copy = Path(FILES_DIR) / op["id"] / Path(value).name
                        (folder / copy).parent.mkdir(parents=True, exist_ok=True)
                        _copy_redacted(Path(value), folder / copy)
                        files[name] = str(copy)
                elif name in ("tags", "params") and isinstance(value, dict):
                    arguments[name] = redact_mapping(value)  # neither MLflow nor the journal holds a secret
            op["arguments"] = json.loads(json.dumps(arguments, default=str))  # what the journal can hold
            if files:
                op["files"] = files
            with open(folder / JOURNAL_FILE, "a", encoding="utf-8") as journal:
                journal.write(_line({"op": op}))
            self._queue.append(op)
            self._start()
            self._cond.notify_all()

    def _folder(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="xgrid-tracking-"))
            self._temporary = True
        return self._dir

    def _start(self) -> None:
        self._stop = False
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="xgrid-tracking", daemon=True)
            self._thread.start()

    # --- the thread ------------------------------------------------------------------------------------------
    def _run(self) -> None:
        wait = FIRST_WAIT
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stop)
                if self._stop:
                    self._thread = None
                    return
                op = self._in_flight = self._queue[0]
                group = self._mergeable(op)
            try:
                if len(group) > 1 and self._perform_merged(group):
                    for member in group:
                        self._finish(member)
                    wait = FIRST_WAIT
                    continue
                result = self._perform(op)
            except UnreachableError as err:
                with self._cond:
                    self._in_flight = None
                    for member in group:  # a merged request that got no answer may have been performed
                        member["retry"] = True
                    if self.unreachable is None:
                        log.warning("the tracking store does not answer (%s): %d writes wait in %s", err,
                                    len(self._queue), self.journal)
                    self.unreachable = str(err)
                    self._cond.wait_for(lambda: self._stop, wait)
                wait = min(wait * 2, LONGEST_WAIT)
                continue
            except Exception as err:  # the store refused it: recorded, and the queue goes on
                lines = str(err).strip().splitlines()
                self._finish(op, error=lines[0] if lines else type(err).__name__)
                continue
            self._finish(op, result=result)
            wait = FIRST_WAIT

    def _mergeable(self, op: dict[str, Any]) -> list[dict[str, Any]]:
        """`op` and the calls queued right after it that one `write_batch` can write with it: metrics, params and
        tags of the same run, no param key twice (MLflow refuses a request that logs one twice)."""
        if op["method"] not in MERGED or not hasattr(self.inner, "write_batch"):
            return [op]
        run, group, keys = op["arguments"].get("run_id"), [op], set(op["arguments"].get("params") or ())
        for following in list(self._queue)[1:MERGE_LIMIT]:
            params = set(following["arguments"].get("params") or ())
            if following["method"] not in MERGED or following["arguments"].get("run_id") != run or params & keys:
                break
            group.append(following)
            keys |= params
        return group

    def _perform_merged(self, group: list[dict[str, Any]]) -> bool:
        """`group` (`_mergeable`) as one request; False if the store refused it (its calls are then performed one
        at a time, so that only the refused one fails). An unreachable store raises, as for a single call."""
        with self._cond:
            calls = [(op["method"], self._resolve(dict(op["arguments"]))) for op in group]
        metrics, params, tags = [], {}, {}
        for method, arguments in calls:
            if method == "log_metrics":
                metrics.append((arguments["metrics"], arguments.get("step", 0), arguments.get("timestamp_ms")))
            elif method == "log_params":
                params.update(arguments["params"])
            else:
                tags.update(arguments["tags"])  # set one after the other, a later value of a tag wins
        try:
            self.inner.write_batch(calls[0][1]["run_id"], metrics, params, tags)
        except UnreachableError:
            raise
        except Exception as err:
            log.debug("a merged tracking request was refused (%s); writing its calls one at a time", err)
            return False
        return True

    def _perform(self, op: dict[str, Any]) -> Any:
        arguments = dict(op["arguments"])
        with self._cond:
            folder = self._dir
            arguments = self._resolve(arguments, keep=op.get("local_id"))
        for name, copy in op.get("files", {}).items():
            arguments[name] = str(folder / copy)
        method = getattr(self.inner, op["method"])
        if op["method"] == "create_run" and op.get("retry"):
            find = getattr(self.inner, "find_run_by_tag", None)
            found = find(LOCAL_ID_TAG, op["local_id"]) if find else None
            if found:
                return found
        bound = inspect.signature(method).bind_partial()
        bound.arguments.update(arguments)
        return method(*bound.args, **bound.kwargs)

    def _resolve(self, value: Any, keep: str | None = None) -> Any:
        """`value` with every local run id in it replaced by the store's (but `keep`: a new run's own tag)."""
        if isinstance(value, str) and value != keep and LOCAL_ID.fullmatch(value):
            if value not in self._ids:
                raise TrackingError(f"run {value} was never created in the store")
            return self._ids[value]
        if isinstance(value, dict):
            return {k: self._resolve(v, keep) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve(v, keep) for v in value]
        return value

    def _finish(self, op: dict[str, Any], result: Any = None, error: str | None = None) -> None:
        with self._cond:
            self._in_flight = None
            if self.unreachable is not None:
                log.warning("the tracking store answers again")
                self.unreachable = None
            if error is None:
                line = {"done": op["id"]}
                if op["method"] == "create_run":
                    self._ids[op["local_id"]] = line["run_id"] = result
            else:
                line = {"failed": op["id"], "error": error}
                self.failed.append({"method": op["method"], "error": error})
                log.warning("tracking: %s was refused by the store: %s", op["method"], error)
            if self._dir is not None:
                with open(self._dir / JOURNAL_FILE, "a", encoding="utf-8") as journal:
                    journal.write(_line(line))
            try:
                self._queue.remove(op)
            except ValueError:
                pass
            self._cond.notify_all()


def _copy_redacted(source: Path, target: Path, text_limit: int = 64 * 2**20) -> None:
    """An artifact as the store will keep it: a text file (space.yaml, plan.json, results) with its secrets
    masked (`xgrid.redaction`), anything else byte for byte."""
    if source.stat().st_size <= text_limit:
        try:
            text = source.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            pass
        else:
            target.write_text(redact(text), encoding="utf-8")
            shutil.copystat(source, target)
            return
    shutil.copy2(source, target)


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record) + "\n"


def _public(op: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in op.items() if k != "retry"}


def read_journal(path: Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The calls a journal holds that are neither done nor refused, in order, and its local -> store id map. A
    line cut short by a killed process is skipped (its call was never queued)."""
    ops: dict[str, dict[str, Any]] = {}
    ids: dict[str, str] = {}
    if not path.is_file():
        return [], ids
    for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(text)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        if "op" in record:
            ops[record["op"]["id"]] = record["op"]
        elif "done" in record:
            op = ops.pop(record["done"], None)
            if op is not None and op.get("local_id") and record.get("run_id"):
                ids[op["local_id"]] = record["run_id"]
        elif "failed" in record:
            ops.pop(record["failed"], None)
        elif "ids" in record:
            ids.update(record["ids"])
    return list(ops.values()), ids


def flush_writers(tracking_uri: str | None, timeout: float = FLUSH_TIMEOUT) -> None:
    """A reader opened in a process that writes to the same store sees what was written before it: it waits (at
    most `timeout` seconds) for this process's queued writes to that store."""
    for writer in list(_LIVE):
        if writer.tracking_uri == tracking_uri:
            writer.flush(timeout)


@atexit.register
def _close_at_exit() -> None:
    # A writer nobody closed (`xgrid compare` logging its report, a script) still gets its writes out, within
    # the same bound as a search's end; one already closed said what it left and is not waited on again.
    for writer in list(_LIVE):
        if not writer._closed and writer.pending:
            writer.close()
