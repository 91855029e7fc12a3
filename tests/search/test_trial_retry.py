"""A trial outlives its worker: a real search, the process that runs the phase SIGKILLed by the test once the
trial's first epoch checkpoint is in its storage. Ray retries the trial (Tune for an inline trial, Train for a
TorchTrainer's worker) from that checkpoint; it finishes COMPLETED, and its metrics equal those of an uninterrupted
run of the same request: exactly (`==`, CPU fp32 on one thread both times)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from xgrid.config import parse_space
from xgrid.events import SearchListener
from xgrid.models.tiny import ensure_tiny_model
from xgrid.planning.plan import build_plan
from xgrid.running.requests import stage2_request
from xgrid.search.options import SearchOptions
from xgrid.search.runner import run_search
from xgrid.search.trial import run_inline
from xgrid.training.phase_checkpoint import STATE_FILE

pytestmark = pytest.mark.integration

# ~1-2 s an epoch on 2 CPUs, and the kill lands within ~0.1 s of epoch 1's report: epochs are left to run.
EPOCHS = {"inline": 3, "ray_train": 4}


def space_for(registry, backend: str, **resources):
    return parse_space({
        "name": f"retry-{backend}", "base_models": [{"name": "tiny"}], "intermediates": ["none"],
        "targets": ["mb_udpos"], "seeds": [0],
        "target_training": {"learning_rate": 0.003, "epochs": EPOCHS[backend], "max_length": 48, "max_eval_examples": 40},
        "search": {"trials_per_cell": 1, "scheduler": "none", "max_failures": 2},
        "resources": {"max_concurrent_trials": 1, "trial_backend": backend, **resources},
    }, registry)


class Heard(SearchListener):
    """What the search's listeners hear; at the trial's end (Ray still up) the actors of that class, alive or dead."""

    def __init__(self, actor_class: str):
        self.actor_class, self.events, self.actors = actor_class, [], []

    def trial_started(self, record):
        self.events.append(("started", record.trial_id))

    def trial_result(self, record, metrics):
        self.events.append(("result", metrics.get("epoch")))

    def trial_finished(self, record):
        self.events.append(("finished", record.status))
        self.actors = actors_of(self.actor_class, alive_only=False)


def actors_of(class_name: str, alive_only: bool = True):
    import ray
    from ray.util.state import list_actors

    filters = [("class_name", "=", class_name)] + ([("state", "=", "ALIVE")] if alive_only else [])
    # The address of this test's cluster: other Ray instances may run on the machine.
    return list_actors(address=ray.get_runtime_context().gcs_address, filters=filters, detail=True)


def kill_after_first_checkpoint(folder: dict, heard: Heard, killed: dict, timeout: float = 500) -> None:
    """Once the driver has heard epoch 1 (its report carried the checkpoint) and the checkpoint is in the trial's
    storage, SIGKILL the process running the phase."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        search_dir = folder.get("dir")
        if search_dir and ("result", 1) in heard.events:
            checkpoints = list(Path(search_dir, "ray").glob(f"**/{STATE_FILE}"))
            if checkpoints:
                actor = actors_of(heard.actor_class)[-1]  # of several workers, any one
                # A copy to look at: Train deletes it once a later one is kept.
                shutil.copytree(checkpoints[0].parent, Path(search_dir) / "first-checkpoint", dirs_exist_ok=True)
                killed.update(pid=actor.pid, checkpoint=str(checkpoints[0]), at_epochs=len(
                    [e for e in heard.events if e[0] == "result"]))
                os.kill(actor.pid, signal.SIGKILL)
                return
        time.sleep(0.05)


def uninterrupted(space, registry, store: str) -> list[dict]:
    """The same request run straight through in this process, on one thread like the trial."""
    (cell,) = build_plan(space, registry).cells
    encoder = str(ensure_tiny_model(store, space.microbench_seed))  # the `none` cell fine-tunes the base model
    threads, reports = torch.get_num_threads(), []
    try:
        run_inline(stage2_request(cell, 0.003, space, encoder), space.resources, reporter=reports.append)
    finally:
        torch.set_num_threads(threads)
    return reports


def killed_search(tmp_path, registry, backend: str, actor_class: str, **resources):
    space = space_for(registry, backend, **resources)
    heard, folder, killed = Heard(actor_class), {}, {}
    killer = threading.Thread(target=kill_after_first_checkpoint, args=(folder, heard, killed), daemon=True)
    killer.start()
    options = SearchOptions(output_root=tmp_path, listeners=(heard,), ray_init={"num_cpus": 2})
    outcome = run_search(build_plan(space, registry), options, on_ready=lambda d, _: folder.update(dir=d))
    killer.join(timeout=5)
    assert killed, f"the trial's process was never killed: {heard.events}"
    (record,) = outcome.records["mb_udpos"]
    assert record.status == "completed", record.error
    return space, options, outcome, record, heard, killed


def assert_equals_uninterrupted(record, reference: list[dict]):
    final = reference[-1]
    for key, value in final.items():
        if key != "seconds":
            assert record.metrics[key] == value, key  # bit for bit
    per_epoch = [{k: h[k] for k in reference[0]} for h in record.history]
    assert per_epoch == [{k: r[k] for k in reference[0]} for r in reference]


@pytest.mark.slow  # a real search with a SIGKILL (~60 s) moves to CI's slow step to keep the default suite under 15 min;
# the default suite keeps the resume-from-checkpoint path (the test after the next one)
def test_an_inline_trial_whose_process_is_killed_resumes_and_matches(tmp_path, registry):
    space, options, outcome, record, heard, killed = killed_search(tmp_path, registry, "inline", "ImplicitFunc")
    assert [h["epoch"] for h in record.history] == list(range(1, EPOCHS["inline"] + 1))  # every epoch heard once
    assert_equals_uninterrupted(record, uninterrupted(space, registry, options.store))
    # Retried once by Tune, and the retry ran in a new process (the killed actor is dead).
    state = json.loads(next((outcome.search_dir / "ray" / "mb_udpos").glob("experiment_state-*.json")).read_text())
    ((_, run_metadata),) = state["trial_data"]  # (trial state, run metadata), both JSON text
    assert json.loads(run_metadata)["num_failures"] == 1
    assert any(a.pid == killed["pid"] and a.state == "DEAD" for a in heard.actors)
    # The failed attempt never reached the listeners as a failed trial: one finish, COMPLETED.
    assert [e for e in heard.events if e[0] == "finished"] == [("finished", "completed")]


@pytest.mark.slow  # ~150 s: a TorchTrainer start-up, then the worker group's restart
def test_a_torch_trainer_worker_killed_resumes_and_matches(tmp_path, registry):
    space, options, outcome, record, heard, killed = killed_search(tmp_path, registry, "ray_train", "RayTrainWorker")
    assert [h["epoch"] for h in record.history] == list(range(1, EPOCHS["ray_train"] + 1))
    assert_equals_uninterrupted(record, uninterrupted(space, registry, options.store))
    # Train restarted the worker group: a second worker, and the Tune trial itself never failed.
    workers = {a.pid: a.state for a in heard.actors}
    assert workers.get(killed["pid"]) == "DEAD" and len(workers) == 2
    assert [e for e in heard.events if e[0] == "started"] == [("started", record.trial_id)]
    assert [e for e in heard.events if e[0] == "finished"] == [("finished", "completed")]


@pytest.mark.slow  # ~4 min: two searches of one FSDP trial (TorchTrainers of two gloo workers), one restarted
def test_an_fsdp_worker_killed_resumes_from_every_ranks_own_shards_and_matches(tmp_path, registry):
    """Under FSDP the retry checkpoint is sharded: each rank saved its own shards of the kept epochs' weights and
    of the optimizer state (torch.distributed.checkpoint folders named after the rank; Train merged the ranks'
    folders), rank 0 the record, and no full copy of the model was written. After a worker is killed the restarted
    ranks each read their own part back, and the trial ends exactly as an uninterrupted FSDP run of it."""
    fsdp = {"workers_per_trial": 2, "cpus_per_worker": 1, "strategy": "fsdp"}
    space, options, outcome, record, heard, killed = killed_search(tmp_path / "killed", registry, "ray_train",
                                                                   "RayTrainWorker", **fsdp)
    assert [h["epoch"] for h in record.history] == list(range(1, EPOCHS["ray_train"] + 1))
    checkpoint = outcome.search_dir / "first-checkpoint"
    state = json.loads((checkpoint / STATE_FILE).read_text())
    assert state["shards"] == 2 and state["optimizer"] is None
    parts = {name.split("/")[0] for name in state["files"]}
    # The kept epochs are the last one and each policy's best so far: epoch 1 alone when the copy was taken at once,
    # later epochs when a loaded machine let Train replace that first checkpoint before the copy (seen in CI).
    kept = {state["epoch"]} | {best["epoch"] for best in state["best"].values()}
    assert kept and {f"weights-epoch{e}.rank{r}" for e in kept for r in (0, 1)} | {"optimizer.rank0", "optimizer.rank1"} <= parts
    assert not list(checkpoint.glob("weights-*.safetensors"))  # no full weights
    assert all((checkpoint / name).stat().st_size == size for name, size in state["files"].items())
    # The reference: the same search, never interrupted.
    straight = run_search(build_plan(space_for(registry, "ray_train", **fsdp), registry),
                          SearchOptions(output_root=tmp_path / "straight", ray_init={"num_cpus": 2}))
    (reference,) = straight.records["mb_udpos"]
    assert reference.status == "completed", reference.error
    # The phase's own figures (dotted names: scores per language, selection, dev; epoch and loss), not Ray's clocks.
    phase = lambda metrics: {k: v for k, v in metrics.items() if "." in k or k in ("epoch", "train_loss")}
    assert len(phase(reference.metrics)) > 10
    assert phase(record.metrics) == phase(reference.metrics)  # bit for bit
    assert [phase(h) for h in record.history] == [phase(h) for h in reference.history]
    workers = {a.pid: a.state for a in heard.actors}
    assert workers.get(killed["pid"]) == "DEAD" and len(workers) == 4  # the group of 2, restarted


class _Died(Exception):
    pass


def test_a_new_trial_continues_an_earlier_attempts_checkpoint_through_trial_setup(tmp_path, registry, store_root,
                                                                                   tiny_model, monkeypatch):
    """The hook a resumed search uses: `TrialSetup.resume_from[resume_key(cell, learning rate)]` names the last
    checkpoint of the dead driver's attempt; stage2_trial's new trial (Tune has no checkpoint for it) continues
    from there and ends with the uninterrupted run's result. Tune's report and checkpoint are stood in for here."""
    import xgrid.search.stage2 as stage2
    from xgrid.search.trial import TuneCheckpoints
    from xgrid.search.tune_metrics import PACKED
    from xgrid.training.context import FolderCheckpoints, LocalContext
    from xgrid.training.phase import run_phase
    from xgrid.training.phase_checkpoint import latest_checkpoint_in

    space = space_for(registry, "inline")
    (cell,) = build_plan(space, registry).cells
    reference = uninterrupted(space, registry, store_root)
    request = stage2_request(cell, 0.003, space, tiny_model)

    def dies_after_epoch_1(metrics):
        if metrics["epoch"] == 1:
            raise _Died

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(_Died):
            run_phase(request, LocalContext(checkpoints=FolderCheckpoints(tmp_path / "earlier", dies_after_epoch_1)))
    finally:
        torch.set_num_threads(threads)
    earlier = latest_checkpoint_in(tmp_path / "earlier")
    reports = []
    # What Tune gets is packed (`tune_metrics`): the phase's own report is the packed string.
    monkeypatch.setattr(stage2.tune, "report", lambda metrics, **_: reports.append(json.loads(metrics[PACKED])))
    monkeypatch.setattr(TuneCheckpoints, "report", lambda self, metrics, folder: reports.append(metrics))
    monkeypatch.setattr(TuneCheckpoints, "latest", lambda self: None)  # a new trial: nothing of its own yet
    setup = stage2.TrialSetup(space, {cell.id: cell}, {cell.stage1_key: tiny_model}, str(tmp_path / "ray"),
                              resume_from={stage2.TrialSetup.resume_key(cell.id, 0.003): str(earlier)})
    try:
        stage2.stage2_trial({"cell": cell.id, "learning_rate": 0.003}, setup)
    finally:
        torch.set_num_threads(threads)
    assert [r["epoch"] for r in reports] == [2, 3]  # epoch 1 came from the earlier attempt
    assert {k: v for k, v in reports[-1].items() if k != "seconds"} == {
        k: v for k, v in reference[-1].items() if k != "seconds"}
