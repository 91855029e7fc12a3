"""Load and featurize the splits a phase needs, through the task's source and format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import datasets

from xgrid.data.sources import LoadContext, MissingSplitError, SplitRole, cap
from xgrid.formats import get_format
from xgrid.tasks.spec import TaskSpec


@dataclass
class Split:
    examples: datasets.Dataset
    features: datasets.Dataset
    _rows: list[dict[str, Any]] | None = None

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The features as Python dicts, converted once: batches then cost no Arrow row look-ups."""
        if self._rows is None:
            self._rows = self.features.to_list()
        return self._rows


def load_split(task: TaskSpec, language: str, role: SplitRole, load: LoadContext,
               max_examples: int | None = None) -> datasets.Dataset | None:
    """The rows of one split, or None when the task has no such split for that language."""
    try:
        examples = task.source.load(task, language, role, load)
    except MissingSplitError:
        return None
    return cap(examples, max_examples)


def featurize(task: TaskSpec, examples: datasets.Dataset, tokenizer: Any, max_length: int,
              training: bool) -> Split:
    fmt = get_format(task.format)
    return Split(examples, fmt.featurize(examples, tokenizer, task, max_length, training))
