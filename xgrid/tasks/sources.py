"""Data sources for the embedded micro-benchmark. (Hugging Face hub and local-path sources live in `hub_sources`.)"""

from __future__ import annotations

from dataclasses import dataclass

import datasets

from xgrid.tasks.spec import LoadContext, MissingSplitError, SplitRole, TaskSpec

# The hub's split names for each canonical role; sources with other names override this.
DEFAULT_SPLITS: dict[str, str] = {"train": "train", "dev": "validation", "test": "test"}


def cap(dataset: datasets.Dataset, max_examples: int | None) -> datasets.Dataset:
    """Keep the first `max_examples` rows: a deterministic cap for smoke runs."""
    if max_examples is None or len(dataset) <= max_examples:
        return dataset
    return dataset.select(range(max_examples))


@dataclass(frozen=True)
class EmbeddedSource:
    """A task of `xgrid.data.microbench`, generated deterministically from the search's micro-benchmark seed."""

    name: str

    def load(self, task: TaskSpec, language: str, role: SplitRole, ctx: LoadContext) -> datasets.Dataset:
        from xgrid.data import microbench

        split = DEFAULT_SPLITS[role]
        if split not in microbench.splits(self.name, language):
            raise MissingSplitError(
                f"task {task.name!r} has no {role!r} data ({split!r} split) for language {language!r}; "
                f"available: {microbench.splits(self.name, language)}"
            )
        return cap(microbench.load(self.name, language, split, seed=ctx.microbench_seed), ctx.max_examples)

    def describe(self) -> str:
        return f"embedded:{self.name}"
