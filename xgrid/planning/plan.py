"""Expand a search space into the work it implies, resolved once: which work is shared, and what each piece needs.

A *cell* is (base model, intermediate entry, target, seed); its learning rate is searched by stage 2. A stage-1
*job* trains one intermediate checkpoint; it depends on the base model, the intermediate task(s), their
hyper-parameters, the seed and the data identity - never on the target - so T targets share it.

`build_plan` is the only place that looks tasks up in the registry: every job and cell carries its `TaskSpec`s
and whether it trains, so everything downstream (cost, stage 1, stage 2, tracking, results) takes the plan alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from xgrid import tracking_schema as schema
from xgrid.data import microbench
from xgrid.config import (EMBEDDED_TINY, NONE_BASELINE, BaseModelSpec, IntermediateGroup, SearchSpace,
                          intermediate_label, intermediate_tasks)
from xgrid.models.identity import model_identity
from xgrid.tasks import TaskRegistry, TaskSpec

CHECKPOINT_FORMAT = 1  # bump when what a stage-1 checkpoint contains changes


@dataclass(frozen=True)
class Stage1Job:
    key: str
    base_model: BaseModelSpec
    intermediate: str  # label: a task name or a group name
    tasks: tuple[str, ...]
    kind: str
    seed: int
    task_specs: tuple[TaskSpec, ...] = field(default=(), compare=False, repr=False)

    @property
    def trains(self) -> bool:
        return bool(self.tasks)

    def tags(self) -> dict[str, str]:
        """What identifies the checkpoint in tracking (a stage-1 run has no target tags)."""
        return {schema.BASE_MODEL_TAG: self.base_model.name, schema.INTERMEDIATE_TAG: self.intermediate,
                schema.INTERMEDIATE_TASKS_TAG: ",".join(self.tasks), schema.KIND_TAG: self.kind,
                schema.SEED_TAG: str(self.seed), schema.STAGE1_KEY_TAG: self.key}


@dataclass(frozen=True)
class Cell:
    id: str
    base_model: BaseModelSpec
    intermediate: str
    intermediate_tasks: tuple[str, ...]
    kind: str  # syntactic / semantic / ner / other / multi / none
    target: str
    target_format: str
    target_group: str
    seed: int
    stage1_key: str
    # The intermediate task is (or contains) the target's own English training data: not transfer.
    own_data: bool = False
    target_task: TaskSpec | None = field(default=None, compare=False, repr=False)
    # The task whose English data the target fine-tunes on (XNLI: MNLI); None for a retrieval target.
    train_task: TaskSpec | None = field(default=None, compare=False, repr=False)
    # The languages evaluated: all of the target's, or those a `task.lang` name selected (English kept first
    # when the target has it: checkpoints are selected on English dev).
    languages: tuple[str, ...] = field(default=(), compare=False, repr=False)
    # "-" for a fine-tuned target; a retrieval target's "xtreme" or "xtreme_r:<fine-tuning task>".
    retrieval_protocol: str = "-"

    @property
    def trains(self) -> bool:
        """Fine-tuned in stage 2, or scored straight from the stage-1 encoder (retrieval)."""
        return self.train_task is not None

    @property
    def metric(self) -> str:
        return self.target_task.metric

    def tags(self) -> dict[str, str]:
        return {schema.CELL_TAG: self.id, schema.BASE_MODEL_TAG: self.base_model.name,
                schema.INTERMEDIATE_TAG: self.intermediate,
                schema.INTERMEDIATE_TASKS_TAG: ",".join(self.intermediate_tasks) or NONE_BASELINE,
                schema.KIND_TAG: self.kind, schema.TARGET_TAG: self.target, schema.TARGET_FORMAT_TAG: self.target_format,
                schema.TARGET_GROUP_TAG: self.target_group, schema.SEED_TAG: str(self.seed),
                schema.STAGE1_KEY_TAG: self.stage1_key, schema.OWN_DATA_TAG: str(self.own_data).lower(),
                schema.RETRIEVAL_PROTOCOL_TAG: self.retrieval_protocol}


@dataclass
class Plan:
    space: SearchSpace
    jobs: list[Stage1Job]  # unique stage-1 checkpoints (baselines included: they train nothing)
    cells: list[Cell]
    notes: list[str] = field(default_factory=list)

    @property
    def trained_jobs(self) -> list[Stage1Job]:
        return [j for j in self.jobs if j.trains]

    def restricted(self, keep) -> "Plan":
        """The plan of the cells `keep(cell)` accepts and the stage-1 jobs they read: one round of a budgeted
        search."""
        cells = [c for c in self.cells if keep(c)]
        keys = {c.stage1_key for c in cells}
        return Plan(self.space, [j for j in self.jobs if j.key in keys], cells, self.notes)

    def cells_for(self, target: str) -> list[Cell]:
        return [c for c in self.cells if c.target == target]

    def target_task(self, target: str) -> TaskSpec:
        return next(c.target_task for c in self.cells if c.target == target)

    def trials_per_cell(self, target: str, model: str | None = None) -> int:
        """Stage-2 trials of a trained cell of the target (and base model: `SearchSpace.trials_per_cell`)."""
        return self.space.trials_per_cell(target, model)

    def trials_of(self, cell: Cell) -> int:
        """Stage-2 trials of a trained cell (`SearchSpace.trials_per_cell` for its target and base model)."""
        return self.space.trials_per_cell(cell.target, cell.base_model.name)

    def stage2_trials(self) -> int:
        return sum(self.trials_of(c) for c in self.cells if c.trains)

    def retrieval_evaluations(self) -> int:
        return sum(not c.trains for c in self.cells)

    def describe(self) -> dict[str, Any]:
        """What plan.json holds: the jobs, the cells (as their tags) and the notes."""
        from dataclasses import asdict, replace

        # The resolved TaskSpecs are the registry's, not the plan's record: the task names are.
        jobs = [{k: v for k, v in asdict(replace(j, task_specs=())).items() if k != "task_specs"} for j in self.jobs]
        return {"jobs": jobs, "cells": [c.tags() for c in self.cells], "notes": self.notes}


def intermediate_kind(entry: Any, registry: TaskRegistry) -> str:
    if isinstance(entry, IntermediateGroup):
        return "multi"
    return NONE_BASELINE if entry == NONE_BASELINE else registry.get(entry).kind


def stage1_key(space: SearchSpace, base: BaseModelSpec, tasks: tuple[TaskSpec, ...], seed: int) -> str:
    """Content address of a stage-1 checkpoint: a hash of everything it depends on, and nothing else."""
    names = sorted(t.name for t in tasks)
    # A local folder counts by the content of its files (replacing the model there changes the key, moving it
    # keeps it); a hub id and the embedded model by their name (`xgrid.models.identity`).
    payload: dict[str, Any] = {"format": CHECKPOINT_FORMAT,
                               "base": {**model_identity(base.source), "family": base.family},
                               "tasks": names, "seed": seed if tasks else None}
    if tasks:
        payload["hparams"] = space.intermediate_training_for(base.name).model_dump(mode="json")
        precision = space.resources_for(base.name).precision
        if precision != "fp32":  # a bf16 run trains (and stores) other weights; fp32 keys stay as they were
            payload["precision"] = precision
        payload["local_paths"] = {t: space.local_paths[t] for t in names if t in space.local_paths}
    if base.source == EMBEDDED_TINY or any(t.source.seeded_by_microbench for t in tasks):
        # The embedded data and tokenizer depend on the seed and on the generator's version.
        payload["microbench_seed"] = space.microbench_seed
        payload["microbench_version"] = microbench.GENERATOR_VERSION
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return digest[:20]


def cell_id(space: SearchSpace, base: BaseModelSpec, label: str, stage1: str, target: str, seed: int,
            protocol: str) -> str:
    """A hash of everything a cell's result depends on: the stage-1 checkpoint (model content key, intermediate
    tasks and settings, seed, data), the target, its fine-tuning protocol and learning-rate search, the
    selection policy and the retrieval settings. Two configurations never share a cell, so a second search
    under the same experiment with other settings adds cells instead of replacing runs."""
    search = space.search
    payload = {"base": base.name, "intermediate": label, "stage1": stage1, "target": target, "seed": seed,
               "training": space.training_for(target, base.name).model_dump(mode="json"),
               "languages": space.target_overrides[target].languages if target in space.target_overrides else None,
               "policy": space.selection_policy, "retrieval": space.retrieval.model_dump(mode="json"),
               "protocol": protocol, "local_paths": dict(sorted(space.local_paths.items())),
               "microbench_seed": space.microbench_seed, "microbench_version": microbench.GENERATOR_VERSION,
               "search": {"trials_per_cell": search.trials_per_cell, "scheduler": search.scheduler,
                          "grace_period": search.grace_period, "reduction_factor": search.reduction_factor,
                          "sampler_seed": search.sampler_seed}}
    precision = space.resources_for(base.name).precision
    if precision != "fp32":  # bf16 autocast changes the numbers; fp32 cell ids stay as they were
        payload["precision"] = precision
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _fine_tuning(space: SearchSpace, target: TaskSpec, registry: TaskRegistry) -> tuple[TaskSpec | None, str]:
    """The task a target's cell fine-tunes on, and the cell's retrieval protocol tag."""
    if registry.trains(target):
        return registry.train_task_of(target), "-"
    if space.retrieval.protocol == "xtreme_r" and target.xtreme_r_fine_tune:
        return registry.get(target.xtreme_r_fine_tune), f"xtreme_r:{target.xtreme_r_fine_tune}"
    return None, "xtreme"


def build_plan(space: SearchSpace, registry: TaskRegistry) -> Plan:
    jobs: dict[str, Stage1Job] = {}
    cells: list[Cell] = []
    selections = {name: registry.select(name) for name in space.targets}
    targets = {name: selection.task for name, selection in selections.items()}
    tuning = {name: _fine_tuning(space, t, registry) for name, t in targets.items()}
    languages = {name: _evaluated_languages(targets[name], _narrowed(selection.languages, space, name))
                 for name, selection in selections.items()}
    for base in space.base_models:
        for entry in space.intermediates:
            label, names = intermediate_label(entry), intermediate_tasks(entry)
            specs = tuple(registry.get(n) for n in names)
            kind = intermediate_kind(entry, registry)
            for seed in space.planned_seeds():  # with a budget: every seed a round may add (the worst case)
                key = stage1_key(space, base, specs, seed)
                jobs.setdefault(key, Stage1Job(key, base, label, names, kind, seed if names else 0, specs))
                for target_name, target in targets.items():
                    train_task, protocol = tuning[target_name]
                    own = _own_data(target, names, registry, train_task)
                    cells.append(Cell(cell_id(space, base, label, key, target_name, seed, protocol), base, label,
                                      names, kind, target_name, target.format, target.group or "", seed, key, own,
                                      target, train_task, languages[target_name], protocol))
    flagged = sorted({(c.intermediate, c.target) for c in cells if c.own_data})
    notes = [f"{i} -> {t}: the intermediate task is the target's own English training data (not transfer)"
             for i, t in flagged]
    return Plan(space, list(jobs.values()), cells, notes)


def _narrowed(selected: tuple[str, ...], space: SearchSpace, target: str) -> tuple[str, ...]:
    override = space.target_overrides.get(target)
    if override is None or override.languages is None:
        return selected
    return tuple(lang for lang in selected if lang in override.languages)


def _evaluated_languages(target: TaskSpec, selected: tuple[str, ...]) -> tuple[str, ...]:
    if "en" in target.languages and "en" not in selected:
        return ("en",) + selected
    return selected


def _own_data(target: TaskSpec, tasks: tuple[str, ...], registry: TaskRegistry,
              train_task: TaskSpec | None = None) -> bool:
    """Whether an intermediate task's English data meets the target's (its own corpora and those of the task it
    fine-tunes on): found from each task's declared lineage (`TaskSpec.english_data`), never from a name list,
    so squad_v2 (SQuAD v1.1 train + unanswerable questions) is own data for XQuAD, MLQA and LAReQA."""
    own = {*target.corpora, *registry.train_task_of(target).corpora, *(train_task.corpora if train_task else ())}
    return any(own.intersection(registry.get(t).corpora) for t in tasks)
