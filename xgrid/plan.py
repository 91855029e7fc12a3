"""Expand a search space into the work it implies, and say which work is shared.

A *cell* is (base model, intermediate entry, target, seed); its learning rate is searched by stage 2. A stage-1
*job* trains one intermediate checkpoint; it depends on the base model, the intermediate task(s), their
hyper-parameters, the seed and the data identity - never on the target - so T targets share it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from xgrid.config import (EMBEDDED_TINY, NONE_BASELINE, BaseModelSpec, IntermediateGroup, SearchSpace,
                          intermediate_label, intermediate_tasks)
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

    @property
    def trains(self) -> bool:
        return bool(self.tasks)


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

    def tags(self) -> dict[str, str]:
        return {"cell_id": self.id, "base_model": self.base_model.name, "intermediate": self.intermediate,
                "intermediate_tasks": ",".join(self.intermediate_tasks) or NONE_BASELINE,
                "intermediate_kind": self.kind, "target": self.target, "target_format": self.target_format,
                "target_group": self.target_group, "seed": str(self.seed), "stage1_key": self.stage1_key,
                "own_data": str(self.own_data).lower()}


@dataclass
class Plan:
    space: SearchSpace
    jobs: list[Stage1Job]  # unique stage-1 checkpoints (baselines included: they train nothing)
    cells: list[Cell]
    notes: list[str] = field(default_factory=list)

    @property
    def trained_jobs(self) -> list[Stage1Job]:
        return [j for j in self.jobs if j.trains]

    def cells_for(self, target: str) -> list[Cell]:
        return [c for c in self.cells if c.target == target]

    def stage2_trials(self, registry: TaskRegistry) -> int:
        per_cell = self.space.search.trials_per_cell if self.space.target_training.searched else 1
        return sum(per_cell if registry.get(c.target).trains else 0 for c in self.cells)

    def retrieval_evaluations(self, registry: TaskRegistry) -> int:
        return sum(not registry.get(c.target).trains for c in self.cells)


def intermediate_kind(entry: Any, registry: TaskRegistry) -> str:
    if isinstance(entry, IntermediateGroup):
        return "multi"
    return NONE_BASELINE if entry == NONE_BASELINE else registry.get(entry).kind


def stage1_key(space: SearchSpace, base: BaseModelSpec, tasks: tuple[str, ...], seed: int) -> str:
    """Content address of a stage-1 checkpoint: a hash of everything it depends on, and nothing else."""
    payload: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "base": {"source": base.source, "family": base.family},
                               "tasks": sorted(tasks), "seed": seed if tasks else None}
    if tasks:
        payload["hparams"] = space.intermediate_training.model_dump(mode="json")
        payload["local_paths"] = {t: space.local_paths[t] for t in sorted(tasks) if t in space.local_paths}
    if base.source == EMBEDDED_TINY or any(t.startswith("mb_") for t in tasks):
        payload["microbench_seed"] = space.microbench_seed  # the embedded data and tokenizer depend on it
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return digest[:20]


def build_plan(space: SearchSpace, registry: TaskRegistry) -> Plan:
    jobs: dict[str, Stage1Job] = {}
    cells: list[Cell] = []
    notes: list[str] = []
    for base in space.base_models:
        for entry in space.intermediates:
            label, tasks = intermediate_label(entry), intermediate_tasks(entry)
            kind = intermediate_kind(entry, registry)
            for seed in space.seeds:
                key = stage1_key(space, base, tasks, seed)
                jobs.setdefault(key, Stage1Job(key, base, label, tasks, kind, seed if tasks else 0))
                for target_name in space.targets:
                    target: TaskSpec = registry.get(target_name)
                    own = _own_data(target, tasks, registry)
                    cell_id = hashlib.sha256(f"{base.name}|{label}|{target_name}|{seed}".encode()).hexdigest()[:10]
                    cells.append(Cell(cell_id, base, label, tasks, kind, target_name, target.format,
                                      target.group or "", seed, key, own))
    flagged = sorted({(c.intermediate, c.target) for c in cells if c.own_data})
    notes += [f"{i} -> {t}: the intermediate task is the target's own English training data (not transfer)"
              for i, t in flagged]
    return Plan(space, list(jobs.values()), cells, notes)


def _own_data(target: TaskSpec, tasks: tuple[str, ...], registry: TaskRegistry) -> bool:
    own = {registry.train_task_of(target).name, target.name, *target.same_data_as}
    return any(t in own for t in tasks)
