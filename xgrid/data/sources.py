"""The contract between a task and the data behind it, and the source of the embedded micro-benchmark.

A data source turns (task, language, split role) into rows in the schema of the task's hub dataset. This module
sits in the data layer, below formats and tasks, so it cannot name `TaskSpec`: what a source reads of the task
it loads for is the `TaskInfo` protocol instead, which every `TaskSpec` satisfies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping, Protocol, runtime_checkable

import datasets

from xgrid.data import microbench

# Canonical split roles: English training data, model-selection data, final evaluation data.
SplitRole = Literal["train", "dev", "test"]
# The hub's split names for each canonical role; sources with other names override this.
DEFAULT_SPLITS: dict[str, str] = {"train": "train", "dev": "validation", "test": "test"}


class MissingSplitError(ValueError):
    """A task has no data for this (language, split role): e.g. XNLI has no train split, XQuAD no dev split."""


@dataclass(frozen=True)
class LoadContext:
    """Everything a data source may need beyond (language, split); built from the validated search space."""

    microbench_seed: int = 0
    max_examples: int | None = None  # cap per split, for smoke runs of real data
    local_paths: Mapping[str, str] = field(default_factory=dict)  # task name -> local path (CCGbank, Mewsli-X)
    cache_dir: str | None = None


class TaskInfo(Protocol):
    """What a source reads of the task it loads for: its name (errors, `local_paths` keys) and its options."""

    @property
    def name(self) -> str: ...

    def option(self, key: str, default: Any = None) -> Any: ...


@runtime_checkable
class DataSource(Protocol):
    """Where a task's examples come from. Returns rows in the schema of the task's hub dataset."""

    # The rows are generated from the search's micro-benchmark seed (`LoadContext.microbench_seed`), so anything
    # derived from them (a stage-1 checkpoint's key) depends on that seed too.
    seeded_by_microbench: ClassVar[bool]
    # `load` builds rows in memory with no download and no file read, so planning may load a split just to
    # count its rows (the cost estimate of `xgrid search --dry-run`).
    cheap_to_load: ClassVar[bool]

    def load(self, task: TaskInfo, language: str, role: SplitRole, ctx: LoadContext) -> datasets.Dataset: ...

    def describe(self) -> str: ...


def cap(dataset: datasets.Dataset, max_examples: int | None) -> datasets.Dataset:
    """Keep the first `max_examples` rows: a deterministic cap for smoke runs."""
    if max_examples is None or len(dataset) <= max_examples:
        return dataset
    return dataset.select(range(max_examples))


@dataclass(frozen=True)
class EmbeddedSource:
    """A task of `xgrid.data.microbench`, generated deterministically from the search's micro-benchmark seed."""

    name: str
    seeded_by_microbench: ClassVar[bool] = True
    cheap_to_load: ClassVar[bool] = True

    def load(self, task: TaskInfo, language: str, role: SplitRole, ctx: LoadContext) -> datasets.Dataset:
        split = DEFAULT_SPLITS[role]
        if split not in microbench.splits(self.name, language):
            raise MissingSplitError(
                f"task {task.name!r} has no {role!r} data ({split!r} split) for language {language!r}; "
                f"available: {microbench.splits(self.name, language)}"
            )
        return cap(microbench.load(self.name, language, split, seed=ctx.microbench_seed), ctx.max_examples)

    def describe(self) -> str:
        return f"embedded:{self.name}"
