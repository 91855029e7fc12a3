"""Stage 2: for each target, one Ray Tune Tuner whose Optuna searcher picks learning rates within each cell (one
per group of base models with the same settings and resources, `SearchSpace.stage2_runs`).

Every cell (intermediate x seed x base model) gets exactly `trials_per_cell` trials: they are enqueued with
their cell fixed and the learning rate left to the sampler (Optuna samples what an enqueued trial omits).
With a list of learning rates no longer than `trials_per_cell`, each value is enqueued for each cell, so
the grid inside a cell is complete. Early stopping compares trials of the same cell only (`schedulers`).
The study of each target lives in the search folder's `optuna.journal` (`xgrid.search.studies`), named
`<space>.<target>` (`<space>.<target>.<model>` for a group of base models with their own settings).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune

from xgrid.config import SearchSpace
from xgrid.events import SearchListener, TrialRecord
from xgrid.nodes import node_name
from xgrid.planning.plan import Cell, Plan
from xgrid.redaction import RedactingWriter
from xgrid.running.requests import stage2_request
from xgrid.search.interrupt import SearchInterrupted, StopOnRequest, StopRequest
from xgrid.search.resume import resume_queue
from xgrid.search.schedulers import PerCellScheduler, make_scheduler
from xgrid.search.studies import study_storage
from xgrid.search.trial import run_inline, torch_trainer
from xgrid.search.tune_events import TuneEvents, short_error
from xgrid.tracking_schema import EPOCH, SECONDS, select_metric


DRIVER_MEMORY = 64 * 1024**2  # bytes reserved by the Tune trial that only drives a TorchTrainer


@dataclass(frozen=True)
class TrialSetup:
    """Shared by every trial of a target; travels once through the object store (tune.with_parameters)."""

    space: SearchSpace
    cells: dict[str, Cell]
    encoders: dict[str, str]  # stage-1 key -> encoder source (a store reference: the trial's node fetches it)
    storage_path: str
    # A search resumed after its driver died: `resume_key(cell, learning rate)` -> the last checkpoint folder of
    # that trial's earlier attempt (`xgrid.training.phase_checkpoint.latest_checkpoint_in(trial folder)`). A new
    # trial of the same cell and learning rate continues from it, unless Tune already has a checkpoint of its own.
    resume_from: dict[str, str] | None = None

    @staticmethod
    def resume_key(cell_id: str, learning_rate: float) -> str:
        # repr: a float that went through Optuna's storage comes back bit for bit, so the key matches exactly.
        return f"{cell_id}@{float(learning_rate)!r}"


def selection_metric(space: SearchSpace) -> str:
    """What the searcher and early stopping rank: the per-epoch selection score under the declared policy."""
    return select_metric(space.selection_policy)


def stage2_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """One Tune trial: fine-tune the cell's stage-1 encoder on the target with this learning rate."""
    import dataclasses

    from xgrid.search.trial import TuneCheckpoints
    from xgrid.search.tune_metrics import packing_report_callback, tune_report

    cell = setup.cells[config["cell"]]
    learning_rate = float(config["learning_rate"])
    request = stage2_request(cell, learning_rate, setup.space, setup.encoders[cell.stage1_key])
    resume = (setup.resume_from or {}).get(TrialSetup.resume_key(cell.id, learning_rate))
    if resume:
        request = dataclasses.replace(request, resume_from=resume)
    resources = setup.space.resources_for(cell.base_model.name)
    if not resources.uses_ray_train:
        # Every epoch's checkpoint goes to Tune; a retry after the trial's process died continues from the last.
        run_inline(request, resources, reporter=tune_report, checkpoints=TuneCheckpoints())
        return
    trial_id = tune.get_context().get_trial_id()
    # Named after the cell (what the Ray dashboard's Train view shows), unique by the trial id. Train restarts a dead
    # worker's group itself (max_failures), from the last checkpoint the workers reported.
    result = torch_trainer({"request": request, "checkpointing": True}, resources,
                           f"stage2-{trial_name(cell, trial_id)}", setup.storage_path, callbacks=[packing_report_callback()],
                           max_failures=setup.space.search.max_failures).fit()
    if result.error:
        raise result.error


def trial_name(cell: Cell, trial_id: str) -> str:
    """`mb_xnli-mb_chunk-s0-1a2b3c4d`: the target, intermediate and seed, then Tune's unique trial id."""
    return f"{cell.target}-{cell.intermediate}-s{cell.seed}-{trial_id}"


def named_trainable(trainable: type, cells: dict[str, Cell], reused: bool, target: str) -> type:
    """The trial actor as the Ray dashboard lists it. Ray takes an actor's name from its repr once, when it is
    created: an actor Tune reuses for many trials (inline trials) runs every cell of the target, so it is named
    after the target; an actor that runs one trial is named after that trial's cell."""

    class CellTrial(trainable):
        def __repr__(self) -> str:
            if reused:
                return f"stage2-{target}"
            cell = cells.get((self.config or {}).get("cell"))
            return f"stage2-{trial_name(cell, self.trial_id)}" if cell else f"stage2-{target}"

    CellTrial.__name__ = CellTrial.__qualname__ = trainable.__name__
    return CellTrial


def optuna_space(space: SearchSpace, cell_ids: list[str], target: str, model: str | None = None):
    """The searcher's distributions for cells of `target` and base model `model` (one run's: `stage2_runs`)."""
    import optuna.distributions as d

    return {"cell": d.CategoricalDistribution(cell_ids),
            "learning_rate": space.training_for(target, model).learning_rate.optuna_distribution()}


def enqueued_points(space: SearchSpace, cell_ids: list[str], target: str, model: str | None = None
                    ) -> list[dict[str, Any]]:
    return space.training_for(target, model).learning_rate.enqueued_points(cell_ids, space.trials_per_cell(target, model))


def search_target(target: str, plan: Plan, encoders: dict[str, str], search_dir: Path, storage_path: str,
                  listener: SearchListener, stop: StopRequest | None = None,
                  done: list[TrialRecord] = (), round_no: int = 1) -> list[TrialRecord]:
    """Every cell of one target: a Tuner over learning rates, or one retrieval evaluation per cell. A signal
    (`stop`) ends the Tuner and raises SearchInterrupted, with the trials heard so far in `listener`'s records.
    `done`: the target's trials an earlier driver of this search finished (a resume): not run again, and what
    the Tuner runs makes each cell's count up to `trials_per_cell`. `round_no`: a budgeted search's round, whose
    new cells get their own Optuna study and Tune run (`<space>.<target>.r2`, ...). Returns the trials run here."""
    space = plan.space
    cells = plan.cells_for(target)
    if not cells[0].trains:  # every cell of a target shares its format
        scored = {record.cell.id for record in done}
        records = _score_retrieval([c for c in cells if c.id not in scored], space, encoders, listener)
    else:
        records, stop = [], stop or StopRequest()
        for run_name, models in space.stage2_runs(target):
            run_cells = [c for c in cells if c.base_model.name in models]
            if not run_cells:  # a budgeted round without this group's cells
                continue
            ids = {c.id for c in run_cells}
            records += _tune(target, run_cells, space, encoders, search_dir, storage_path, listener, stop,
                             [r for r in done if r.cell.id in ids], round_no, run_name)
    listener.target_finished(target, [*done, *records])  # the selected trial of a cell may be an earlier one
    return records


def _tune(target, cells, space, encoders, search_dir, storage_path, listener, stop, done,
          round_no: int = 1, run_name: str | None = None) -> list[TrialRecord]:
    """One Tune run (`run_name`, default the target's): `cells`, of base models that share their settings and
    resources for the target (`SearchSpace.stage2_runs`)."""
    import warnings

    import optuna

    from ray.tune.trainable import wrap_function

    from xgrid.search.cell_search import CellOptunaSearch
    from xgrid.search.latest_checkpoint import KeepLatestCheckpoint

    model = cells[0].base_model.name  # any of the run's models: they share settings and resources
    settings, resources = space.training_for(target, model), space.resources_for(model)
    cell_ids = [c.id for c in cells]
    points = enqueued_points(space, cell_ids, target, model)
    run_name = run_name or target
    run_name = run_name if round_no == 1 else f"{run_name}.r{round_no}"
    storage, study_name = study_storage(search_dir), f"{space.name}.{run_name}"
    # Enqueued on the study itself: Ray's points_to_evaluate insists on every parameter, while Optuna lets an
    # enqueued trial fix the cell and leave the learning rate to the sampler. The searcher then opens the same
    # study (load_if_exists) and its ask() pops these waiting trials in order.
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize", load_if_exists=True)
    with warnings.catch_warnings():  # experimental in Optuna: it works, and the warning would reach the user
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([selection_metric(space)])  # optuna-dashboard names the objective
    # A fresh study gets the planned points; a resumed one keeps its waiting trials, gets the unfinished ones
    # again and only what each cell still lacks (`resume.plan_queue`).
    queue = resume_queue(study, study_name, points, done, space.trials_per_cell(target, model), search_dir)
    if queue.nothing_to_run:
        return []
    scheduler = make_scheduler(space.search.scheduler, selection_metric(space), settings.epochs,
                               space.search.grace_period,
                               space.search.reduction_factor)
    stopped = scheduler.stopped_early if isinstance(scheduler, PerCellScheduler) else set()
    by_id = {c.id: c for c in cells}
    # TPE's random start-up trials: one round of the cells (`round_robin`), at most Optuna's default of 10. With
    # the default (10) a target of few cells x few trials would be sampled almost entirely at random.
    sampler = optuna.samplers.TPESampler(seed=space.search.sampler_seed, n_startup_trials=min(len(cells), 10))
    searcher = CellOptunaSearch(space=optuna_space(space, cell_ids, target, model), metric=selection_metric(space), mode="max",
                                storage=storage, study_name=study_name, sampler=sampler,
                                cells=by_id, stopped_early=stopped)
    events = TuneEvents(by_id, listener, stopped, stop)
    setup = TrialSetup(space, by_id, encoders, storage_path,
                       resume_from=_earlier_checkpoints(queue, by_id, storage_path, run_name) or None)
    inline = not resources.uses_ray_train
    # An inline trial computes in its own process, so it holds its CPUs. A ray_train trial only drives a
    # TorchTrainer whose workers hold the CPUs/GPUs: any CPU fraction for the driver would leave 2 workers x 1 CPU
    # unplaceable on 2 CPUs (a silent hang), and Tune rejects an empty request, so the driver asks for memory.
    trial_resources = {"CPU": resources.cpus_per_worker} if inline else {"CPU": 0, "memory": DRIVER_MEMORY}
    name = lambda trial: trial_name(by_id[trial.config["cell"]], trial.trial_id)
    trial_function = tune.with_resources(tune.with_parameters(stage2_trial, setup=setup), trial_resources)
    tuner = tune.Tuner(
        named_trainable(wrap_function(trial_function), by_id, inline, target),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=queue.runs,
                                    # deterministic: one trial at a time, so results reach the sampler and ASHA
                                    # in the order they were asked for, whatever the machine's load.
                                    max_concurrent_trials=1 if space.search.deterministic
                                    else resources.max_concurrent_trials,
                                    reuse_actors=inline, trial_name_creator=name, trial_dirname_creator=name),
        run_config=tune.RunConfig(name=run_name, storage_path=storage_path, verbose=0,
                                  # Not num_to_keep=1: Tune would snapshot the whole experiment after every epoch's
                                  # checkpoint; the callback deletes the previous one instead (`latest_checkpoint`).
                                  callbacks=[events, KeepLatestCheckpoint()],
                                  stop=StopOnRequest(stop),
                                  # A TorchTrainer's dead worker is retried by Train (`torch_trainer`); Tune retrying its
                                  # driver as well would run an error that repeats (N+1)^2 times.
                                  failure_config=tune.FailureConfig(max_failures=space.search.max_failures if inline
                                                                    else 0),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=None)),
    )
    # Tune prints where its files are even at verbose=0; keep that in the search folder, out of the live view.
    # Redacted: MLflow prints "View run ... at <tracking URI>" there too, a password in the URI with it.
    try:
        with open(search_dir / "tune.log", "a") as log, contextlib.redirect_stdout(RedactingWriter(log)), \
                stop.tune_running():
            tuner.fit()
    except SearchInterrupted as err:
        events.cut_off_unfinished()
        err.records = list(events.records.values())  # the trials heard before the stop: the runner keeps them
        raise
    return list(events.records.values())


def _earlier_checkpoints(queue, cells: dict[str, Cell], storage_path: str, run_name: str) -> dict[str, str]:
    """A trial the dead driver left unfinished runs again from the last checkpoint of its earlier attempt: in
    its Tune trial folder (inline trials) or its TorchTrainer's run folder (ray_train trials). Only a local
    storage path is searched (a trial's checkpoints on s3:// are not listed here: such a trial starts over)."""
    from xgrid.running.store import is_uri
    from xgrid.search.resume import earlier_checkpoints
    from xgrid.training.phase_checkpoint import latest_checkpoint_in

    if is_uri(storage_path) or not queue.again:
        return {}

    def folders(cell_id: str, trial_id: str) -> list[Path]:
        name = trial_name(cells[cell_id], trial_id)
        return [Path(storage_path) / run_name / name, Path(storage_path) / f"stage2-{name}"]

    found = earlier_checkpoints(queue, lambda c, t: folders(c, t) if c in cells else [], latest_checkpoint_in)
    return {TrialSetup.resume_key(cell_id, rate): path for (cell_id, rate), path in found.items()}


@ray.remote
def _retrieval_eval(cell: Cell, space: SearchSpace, encoder: str) -> tuple[dict[str, Any], str]:
    # Nothing is trained: the learning rate only fills the request's hyper-parameters.
    model = cell.base_model.name
    request = stage2_request(cell, space.training_for(cell.target, model).learning_rate.fixed_value(), space, encoder)
    result = run_inline(request, space.resources_for(model))
    return result.flat_metrics() | {SECONDS: result.seconds, EPOCH: 0}, node_name()


def _score_retrieval(cells, space, encoders, listener) -> list[TrialRecord]:
    """Retrieval targets train nothing: each cell's stage-1 encoder is scored once, as a Ray task."""
    records, pending = [], {}
    for cell in cells:
        record = TrialRecord(f"retrieval-{cell.id}", cell, None)
        listener.trial_started(record)
        ref = _retrieval_eval.options(num_cpus=space.resources_for(cell.base_model.name).cpus_per_worker, name=f"retrieval-{trial_name(cell, 'eval')}"
                                      ).remote(cell, space, encoders[cell.stage1_key])
        pending[ref] = record
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        record = pending.pop(done[0])
        try:
            record.metrics, record.node = ray.get(done[0])
            record.history = [record.metrics]
        except Exception as err:
            record.status, record.error = "failed", short_error(err)
        listener.trial_finished(record)
        records.append(record)
    return records
