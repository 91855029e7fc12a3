"""`QueuedWriter` against a fake backend writer that blocks, fails to answer, or refuses: the caller never waits,
nothing is lost or written twice, and what is left is replayed from the search folder's journal."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from xgrid.tracking import QueuedWriter, TrackingError, UnreachableError, open_reader, open_writer
from xgrid.tracking.queued import JOURNAL_DIR, JOURNAL_FILE, LOCAL_ID, LOCAL_ID_TAG, read_journal
from tests.tracking.memory import memory_backend  # noqa: F401

WAIT = 30  # seconds: a hang guard, never a bound the test measures


class FakeStore:
    def __init__(self):
        self.runs: dict[str, dict] = {}
        self.calls: list[tuple] = []


class FakeWriter:
    """A backend writer over a FakeStore. `down` calls fail as unreachable; `answer_lost` create_runs make the run
    and then fail as unreachable (the response was lost); `gate`, when set, is waited on by every call."""

    tracking_uri = "fake:"
    experiment_id = "0"

    def __init__(self, store: FakeStore | None = None):
        self.store = store or FakeStore()
        self.down = 0
        self.answer_lost = 0
        self.down_after_lost = 0
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.now = 1000

    def _enter(self, *call):
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT)
        if self.down:
            self.down -= 1
            raise UnreachableError("connection refused")
        self.store.calls.append(call)

    def clock_ms(self) -> int:
        return self.now

    def create_run(self, name, tags, timestamp_ms=None):
        self._enter("create_run", name)
        run_id = f"real{len(self.store.runs)}"
        self.store.runs[run_id] = {"name": name, "tags": dict(tags), "metrics": [], "params": {}, "status": "RUNNING",
                                   "start": timestamp_ms, "artifacts": {}}
        if self.answer_lost:
            self.answer_lost -= 1
            self.down = self.down_after_lost
            raise UnreachableError("read timed out")
        return run_id

    def find_run_by_tag(self, key, value):
        if self.down:
            self.down -= 1
            raise UnreachableError("connection refused")
        return next((i for i, r in self.store.runs.items() if r["tags"].get(key) == value), None)

    def log_metrics(self, run_id, metrics, step=0, timestamp_ms=None):
        self._enter("log_metrics", run_id)
        self.store.runs[run_id]["metrics"].append((step, dict(metrics), timestamp_ms))

    def log_params(self, run_id, params):
        self._enter("log_params", run_id)
        run = self.store.runs[run_id]
        for key, value in params.items():
            if run["params"].setdefault(key, value) != value:
                raise TrackingError(f"param {key} was already logged with another value")

    def set_tags(self, run_id, tags):
        self._enter("set_tags", run_id)
        self.store.runs[run_id]["tags"].update(tags)

    def log_artifact(self, run_id, path, folder=None):
        self._enter("log_artifact", run_id)
        self.store.runs[run_id]["artifacts"][Path(path).name] = Path(path).read_text()

    def end_run(self, run_id, status, timestamp_ms=None):
        self._enter("end_run", run_id)
        self.store.runs[run_id]["status"] = status

    def reopen_run(self, run_id):  # a method the queue was not written for: forwarded like the others
        self._enter("reopen_run", run_id)
        self.store.runs[run_id]["status"] = "RUNNING"


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    import xgrid.tracking.queued as queued

    monkeypatch.setattr(queued, "FIRST_WAIT", 0.01)
    monkeypatch.setattr(queued, "LONGEST_WAIT", 0.05)


def journal_records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / JOURNAL_DIR / JOURNAL_FILE).read_text().splitlines()]


def test_calls_return_while_the_store_is_blocked():
    inner = FakeWriter()
    inner.gate = threading.Event()
    writer = QueuedWriter(inner)
    run = writer.create_run("r", {"a": "1"})
    assert inner.entered.wait(WAIT)  # the thread is inside create_run, held there
    writer.log_metrics(run, {"m": 1.0}, step=1)  # returns though the store has not answered
    writer.set_tags(run, {"b": "2"})
    writer.end_run(run, "FINISHED")
    assert LOCAL_ID.fullmatch(run) and inner.store.calls == [] and writer.pending == 4
    inner.gate.set()
    assert writer.close(WAIT) == 0
    (real,) = inner.store.runs
    assert [c[0] for c in inner.store.calls] == ["create_run", "log_metrics", "set_tags", "end_run"]
    assert all(c[1] == real for c in inner.store.calls[1:])  # the local id became the store's
    assert writer.real_id(run) == real and inner.store.runs[real]["status"] == "FINISHED"
    assert inner.store.runs[real]["tags"] == {"a": "1", "b": "2", LOCAL_ID_TAG: run}


def test_times_are_those_of_the_calls_not_of_the_writes():
    inner = FakeWriter()
    inner.gate = threading.Event()
    writer = QueuedWriter(inner)
    run = writer.create_run("r", {})
    inner.now = 2000
    writer.log_metrics(run, {"m": 1.0})
    inner.now = 3000
    inner.gate.set()
    writer.close(WAIT)
    (record,) = inner.store.runs.values()
    assert record["start"] == 1000 and record["metrics"] == [(0, {"m": 1.0}, 2000)]


def test_an_unreachable_store_is_retried_in_order_without_duplicates(tmp_path):
    inner = FakeWriter()
    inner.down, inner.answer_lost = 3, 1  # three calls get no answer; then create_run's answer is lost
    writer = QueuedWriter(inner)
    writer.use_folder(tmp_path)
    parent = writer.create_run("parent", {})
    child = writer.create_run("child", {"mlflow.parentRunId": parent})  # a local id inside a tag value
    writer.log_params(child, {"lr": "0.1"})
    writer.end_run(child, "FINISHED")
    assert writer.close(WAIT) == 0
    assert sorted(r["name"] for r in inner.store.runs.values()) == ["child", "parent"]  # none made twice
    child_run = inner.store.runs[writer.real_id(child)]
    assert child_run["tags"]["mlflow.parentRunId"] == writer.real_id(parent)
    assert child_run["params"] == {"lr": "0.1"} and child_run["status"] == "FINISHED"
    assert read_journal(tmp_path / JOURNAL_DIR / JOURNAL_FILE)[0] == []  # nothing left pending


def test_a_refused_call_is_recorded_and_the_queue_goes_on(tmp_path):
    inner = FakeWriter()
    writer = QueuedWriter(inner)
    writer.use_folder(tmp_path)
    run = writer.create_run("r", {})
    writer.log_params(run, {"lr": "0.1"})
    writer.log_params(run, {"lr": "0.2"})  # refused by the store
    writer.end_run(run, "FINISHED")
    assert writer.close(WAIT) == 0
    assert inner.store.runs[writer.real_id(run)]["status"] == "FINISHED"
    assert writer.failed == [{"method": "log_params", "error": "param lr was already logged with another value"}]
    failed = [r for r in journal_records(tmp_path) if "failed" in r]
    assert [r["error"] for r in failed] == ["param lr was already logged with another value"]


def test_a_run_never_created_fails_its_calls_instead_of_wedging(tmp_path):
    inner = FakeWriter()
    inner.create_run = lambda name, tags, timestamp_ms=None: (_ for _ in ()).throw(TrackingError("bad name"))
    writer = QueuedWriter(inner)
    run = writer.create_run("r", {})
    writer.end_run(run, "FINISHED")
    assert writer.close(WAIT) == 0
    assert [f["method"] for f in writer.failed] == ["create_run", "end_run"]


def test_close_is_bounded_and_the_journal_replays_in_a_later_process(tmp_path):
    results = tmp_path / "results.json"
    results.write_text("first")
    dead = FakeWriter()
    dead.down = 10**9  # never answers
    first = QueuedWriter(dead)
    first.use_folder(tmp_path)
    run = first.create_run("trial", {})
    first.log_metrics(run, {"f1": 50.0}, step=2)
    first.log_artifact(run, results)
    results.write_text("rewritten after the call")  # the artifact is what the file held when it was logged
    assert first.close(timeout=0.2) == 3 and first.journal == tmp_path / JOURNAL_DIR / JOURNAL_FILE
    assert dead.store.runs == {}

    store = FakeStore()
    second = QueuedWriter(FakeWriter(store))  # the same search folder, in a new process (resume)
    second.use_folder(tmp_path)
    second.end_run(run, "FINISHED")  # an id the earlier process handed out
    assert second.close(WAIT) == 0
    (record,) = store.runs.values()
    assert record["metrics"] == [(2, {"f1": 50.0}, 1000)] and record["status"] == "FINISHED"
    assert record["artifacts"] == {"results.json": "first"}
    assert second.real_id(run) == next(iter(store.runs))
    third = QueuedWriter(FakeWriter(store))  # nothing left: a later resume repeats nothing
    third.use_folder(tmp_path)
    assert third.pending == 0 and third.real_id(run) == second.real_id(run)
    third.reopen_run(run)
    assert third.close(WAIT) == 0 and len(store.calls) == 5 and store.calls[-1] == ("reopen_run", "real0")


def test_a_replayed_create_run_finds_the_run_its_lost_answer_made(tmp_path):
    store = FakeStore()
    inner = FakeWriter(store)
    first = QueuedWriter(inner)
    first.use_folder(tmp_path)
    inner.answer_lost, inner.down_after_lost = 1, 10**9  # made in the store, then nothing answers
    run = first.create_run("r", {})
    assert first.close(timeout=0.2) == 1  # the process ends before it could tell
    assert len(store.runs) == 1

    second = QueuedWriter(FakeWriter(store))
    second.use_folder(tmp_path)
    second.end_run(run, "KILLED")
    assert second.close(WAIT) == 0
    assert len(store.runs) == 1 and store.runs[second.real_id(run)]["status"] == "KILLED"


def test_calls_before_the_folder_move_into_it_and_a_cut_line_is_skipped(tmp_path):
    inner = FakeWriter()
    inner.gate = threading.Event()
    writer = QueuedWriter(inner)
    run = writer.create_run("r", {})
    temporary = writer.journal
    (tmp_path / JOURNAL_DIR).mkdir()
    (tmp_path / JOURNAL_DIR / JOURNAL_FILE).write_text('{"op": {"id": "cut')  # a process killed mid-line
    writer.use_folder(tmp_path)
    writer.end_run(run, "FINISHED")
    left, _ = read_journal(tmp_path / JOURNAL_DIR / JOURNAL_FILE)
    assert [op["method"] for op in left] == ["create_run", "end_run"] and writer.journal != temporary
    inner.gate.set()
    assert writer.close(WAIT) == 0 and inner.store.runs["real0"]["status"] == "FINISHED"


def test_a_call_after_close_is_still_written():
    inner = FakeWriter()
    writer = QueuedWriter(inner)
    run = writer.create_run("r", {})
    assert writer.close(WAIT) == 0
    writer.end_run(run, "FINISHED")
    assert writer.close(WAIT) == 0 and inner.store.runs["real0"]["status"] == "FINISHED"


def test_a_wrong_call_fails_in_the_caller():
    writer = QueuedWriter(FakeWriter())
    with pytest.raises(TypeError):
        writer.log_metrics("run", {"m": 1.0}, 0, 0, "too many")
    with pytest.raises(AttributeError):
        writer.no_such_method


def test_open_writer_queues_and_a_reader_sees_what_was_written(memory_backend):  # noqa: F811
    writer = open_writer("memory:q", "e")
    assert isinstance(writer, QueuedWriter) and writer.experiment_id == "0"
    run = writer.create_run("search-1", {"stage": "search"})
    reader = open_reader("memory:q")  # waits for this process's writes to the store
    assert reader.find_parent_run("0") == writer.real_id(run)
    writer.close()


def test_tags_params_and_text_artifacts_reach_the_store_and_the_journal_without_secrets(tmp_path, monkeypatch):
    """A secret in the environment or a URI password, planted in a tag, a param and an artifact's text."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "planted-s3-key-55555")
    inner = FakeWriter()
    writer = QueuedWriter(inner)
    writer.use_folder(tmp_path / "search")
    run = writer.create_run("r", {"uri": "postgresql://u:planted-pw@db/m"})
    writer.log_params(run, {"folder": "/data/planted-s3-key-55555/x"})
    artifact = tmp_path / "plan.json"
    artifact.write_text('{"store": "s3://AKIA:planted-pw@bucket"}')
    writer.log_artifact(run, artifact)
    assert writer.close() == 0
    stored = repr(inner.store.runs)
    journal = "".join(p.read_text(errors="replace") for p in (tmp_path / "search").rglob("*") if p.is_file())
    assert "planted" not in stored and "planted" not in journal
    assert "postgresql://u:***@db/m" in stored


class BatchingWriter(FakeWriter):
    """A FakeWriter with MLflow's one-request form of metrics, params and tags (`write_batch`): refused whole
    when a param conflicts with one already logged, as MLflow's log_batch is."""

    def write_batch(self, run_id, metrics, params, tags):
        self._enter("write_batch", run_id, len(metrics), tuple(params), tuple(tags))
        run = self.store.runs[run_id]
        for key, value in params.items():
            if run["params"].get(key, value) != value:
                raise TrackingError(f"param {key} was already logged with another value")
        run["params"].update(params)
        run["tags"].update(tags)
        run["metrics"] += [(step, dict(values), at) for values, step, at in metrics]


def test_writes_of_one_run_waiting_in_the_queue_go_in_one_request_each_journaled(tmp_path):
    inner = BatchingWriter()
    inner.gate = threading.Event()
    writer = QueuedWriter(inner)
    writer.use_folder(tmp_path)
    run = writer.create_run("r", {})
    assert inner.entered.wait(WAIT)  # held inside create_run: what follows waits in the queue
    writer.log_params(run, {"lr": "0.1"})
    writer.set_tags(run, {"a": "1"})
    for epoch in (1, 2, 3):
        inner.now = 1000 + epoch
        writer.log_metrics(run, {"m": float(epoch)}, step=epoch)
    writer.set_tags(run, {"a": "2"})  # a later value of a tag wins, as written one after the other
    writer.end_run(run, "FINISHED")
    other = writer.create_run("other", {})
    writer.log_params(other, {"lr": "0.2"})
    inner.gate.set()
    assert writer.close(WAIT) == 0
    real = writer.real_id(run)
    assert [c[:2] for c in inner.store.calls] == [("create_run", "r"), ("write_batch", real), ("end_run", real),
                                                  ("create_run", "other"), ("log_params", writer.real_id(other))]
    assert inner.store.calls[1][2:] == (3, ("lr",), ("a",))
    stored = inner.store.runs[real]
    assert stored["metrics"] == [(1, {"m": 1.0}, 1001), (2, {"m": 2.0}, 1002), (3, {"m": 3.0}, 1003)]
    assert stored["params"] == {"lr": "0.1"} and stored["tags"]["a"] == "2" and stored["status"] == "FINISHED"
    records = journal_records(tmp_path)
    assert len([r for r in records if "op" in r]) == len([r for r in records if "done" in r]) == 10


def test_a_param_logged_twice_in_the_queue_is_not_merged_and_a_refused_request_is_written_one_call_at_a_time(
        tmp_path):
    inner = BatchingWriter()
    inner.gate = threading.Event()
    writer = QueuedWriter(inner)
    writer.use_folder(tmp_path)
    run = writer.create_run("r", {})
    assert inner.entered.wait(WAIT)
    writer.log_params(run, {"lr": "0.1"})
    writer.log_params(run, {"lr": "0.2"})  # the same key again: a request of its own, refused
    writer.set_tags(run, {"a": "1"})
    writer.log_metrics(run, {"m": 1.0}, step=1)
    inner.gate.set()
    assert writer.close(WAIT) == 0
    # 0.1 alone (0.2 repeats its key); 0.2 with the tag and metric, refused whole; 0.2 alone, refused; the
    # tag and the metric in one request.
    assert [c[0] for c in inner.store.calls] == ["create_run", "log_params", "write_batch", "log_params",
                                                 "write_batch"]
    stored = inner.store.runs[writer.real_id(run)]
    assert stored["params"] == {"lr": "0.1"} and stored["tags"]["a"] == "1" and stored["metrics"] == [
        (1, {"m": 1.0}, 1000)]
    assert writer.failed == [{"method": "log_params", "error": "param lr was already logged with another value"}]
    assert read_journal(tmp_path / JOURNAL_DIR / JOURNAL_FILE)[0] == []


def test_a_merged_request_that_gets_no_answer_is_retried_whole(tmp_path):
    inner = BatchingWriter()
    inner.gate = threading.Event()
    writer = QueuedWriter(inner)
    writer.use_folder(tmp_path)
    run = writer.create_run("r", {})
    assert inner.entered.wait(WAIT)
    writer.log_params(run, {"lr": "0.1"})
    writer.log_metrics(run, {"m": 1.0}, step=1)
    inner.down = 1  # after create_run: the merged request gets no answer once
    inner.gate.set()
    assert writer.close(WAIT) == 0
    assert [c[0] for c in inner.store.calls] == ["create_run", "write_batch"]
    stored = inner.store.runs[writer.real_id(run)]
    assert stored["params"] == {"lr": "0.1"} and stored["metrics"] == [(1, {"m": 1.0}, 1000)]


def test_mlflow_gets_from_a_merged_request_what_one_call_at_a_time_gives(tmp_path):
    """The real MLflow writer on SQLite: a run written while the queue had a backlog (merged) and one written
    call by call hold the same metric history, params and tags."""
    import functools

    from mlflow import MlflowClient

    from xgrid.tracking.mlflow_writer import MlflowWriter

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def write(writer, name):
        run = writer.create_run(name, {"kind": "x"})
        writer.log_params(run, {"lr": "0.1", "seed": "0"})
        for epoch in (1, 2):
            writer.log_metrics(run, {"m": epoch / 3, "n": float(epoch)}, step=epoch, timestamp_ms=5000 + epoch)
        writer.set_tags(run, {"selected": "false"})
        writer.set_tags(run, {"selected": "true"})
        writer.end_run(run, "FINISHED")
        return run

    inner = MlflowWriter(uri, "e")
    gate, calls = threading.Event(), []
    create, batch = inner.create_run, inner.write_batch

    @functools.wraps(create)
    def held_create(*args, **kwargs):
        assert gate.wait(WAIT)
        return create(*args, **kwargs)

    @functools.wraps(batch)
    def counted_batch(*args, **kwargs):
        calls.append(args[0])
        return batch(*args, **kwargs)

    inner.create_run, inner.write_batch = held_create, counted_batch
    merged = QueuedWriter(inner)
    run_merged = write(merged, "merged")
    gate.set()
    assert merged.close(WAIT) == 0 and len(calls) == 1
    run_plain = write(MlflowWriter(uri, "e"), "plain")  # the backend itself: one call, one request
    client = MlflowClient(uri)
    got = {}
    for name, run_id in (("merged", merged.real_id(run_merged)), ("plain", run_plain)):
        run = client.get_run(run_id)
        history = {key: [(m.step, m.value, m.timestamp) for m in client.get_metric_history(run_id, key)]
                   for key in ("m", "n")}
        tags = {k: v for k, v in run.data.tags.items() if not k.startswith(("mlflow.", "xgrid.local"))}
        got[name] = (history, run.data.params, tags, run.info.status)
    assert got["merged"] == got["plain"]
    assert got["plain"][0]["m"] == [(1, 1 / 3, 5001), (2, 2 / 3, 5002)] and got["plain"][2] == {
        "kind": "x", "selected": "true"}
