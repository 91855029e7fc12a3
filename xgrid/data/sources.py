"""The contract between a task and the data behind it, and the source of the embedded micro-benchmark.

A data source turns (task, language, split role) into rows in the schema of the task's hub dataset. This module
sits in the data layer, below formats and tasks, so it cannot name `TaskSpec`: what a source reads of the task
it loads for is the `TaskInfo` protocol instead, which every `TaskSpec` satisfies.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Literal, Mapping, Protocol, runtime_checkable

import datasets

from xgrid.data import microbench

# Canonical split roles: English training data, model-selection data, final evaluation data.
SplitRole = Literal["train", "dev", "test"]
# The hub's split names for each canonical role; sources with other names override this.
DEFAULT_SPLITS: dict[str, str] = {"train": "train", "dev": "validation", "test": "test"}


class MissingSplitError(ValueError):
    """A task has no data for this (language, split role): e.g. XNLI has no train split, XQuAD no dev split."""


# Errors a worker raises travel to the driver pickled (Ray), which rebuilds them from their message alone: every
# error here is constructible from one string.
class DatasetUnavailableError(RuntimeError):
    """The data a task needs cannot be had on this machine (not cached and no network, or no local copy)."""


class LocalDataMissingError(DatasetUnavailableError):
    """A task's `local_paths.<task>` is unset where only local data exists, or names a folder without the data."""

    def __init__(self, task: str, what: str | None = None, path: str | None = None):
        if what is None:  # the message itself (how a pickled copy is rebuilt)
            super().__init__(task)
            return
        where = (f"`local_paths.{task}` is {path!r}, which does not hold it" if path
                 else f"set `local_paths.{task}` in the search space")
        super().__init__(f"task {task!r} reads local data only ({what}): {where}")


def local_path(task: "TaskInfo", ctx: "LoadContext", what: str) -> Path:
    """The folder `local_paths.<task>` names; LocalDataMissingError if it is unset or not there."""
    value = ctx.local_paths.get(task.name)
    if not value:
        raise LocalDataMissingError(task.name, what)
    path = Path(value).expanduser()
    if not path.exists():
        raise LocalDataMissingError(task.name, what, value)
    return path


@dataclass(frozen=True)
class LoadContext:
    """Everything a data source may need beyond (language, split); built from the validated search space."""

    microbench_seed: int = 0
    max_examples: int | None = None  # cap per split, for smoke runs of real data
    # task name -> local folder: a local copy of a hub task (`xgrid.data.local_copy`) or a local-only corpus
    # (CCGbank, Mewsli-X). Absolute paths (the space resolves them), so every node finds the same folder.
    local_paths: Mapping[str, str] = field(default_factory=dict)
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
    # Optional (not part of the protocol check): `local_data`, what `local_paths.<task>` names for this source
    # (see LOCAL_DATA). Without it, a source reads local files unless the micro-benchmark seeds it.

    def load(self, task: TaskInfo, language: str, role: SplitRole, ctx: LoadContext) -> datasets.Dataset: ...

    def describe(self) -> str: ...


@contextlib.contextmanager
def hub_switched_off() -> Iterator[None]:
    """Run `datasets` as if HF_DATASETS_OFFLINE=1 were set: the cache and local files are used and no request is
    made. (Module state: loads in one process are sequential in xgrid, so flipping it is safe here.)"""
    import huggingface_hub.constants as hub_constants

    saved = datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE, hub_constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def cap(dataset: datasets.Dataset, max_examples: int | None) -> datasets.Dataset:
    """Keep the first `max_examples` rows: a deterministic cap for smoke runs."""
    if max_examples is None or len(dataset) <= max_examples:
        return dataset
    return dataset.select(range(max_examples))


# What a source does with `local_paths.<task>`: "copy" - reads a local copy of its hub data instead of the hub
# (`xgrid.data.local_copy`, what `xgrid prefetch --to` writes); "files" - reads a corpus's own files (CCGbank);
# None - nothing (generated data), so setting it is a mistake the space refuses.
LOCAL_DATA = ("copy", "files", None)


def local_data(source: Any) -> str | None:
    default = None if getattr(source, "seeded_by_microbench", False) else "files"
    return getattr(source, "local_data", default)


@dataclass(frozen=True)
class EmbeddedSource:
    """A task of `xgrid.data.microbench`, generated deterministically from the search's micro-benchmark seed."""

    name: str
    seeded_by_microbench: ClassVar[bool] = True
    cheap_to_load: ClassVar[bool] = True
    local_data: ClassVar[str | None] = None

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
