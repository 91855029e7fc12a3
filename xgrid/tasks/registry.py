"""The task registry: a name -> TaskSpec table with language fan-out and typo suggestions.

Adding a task is one `TaskSpec` entry in one of the entry modules (`embedded`, `hub`); nothing else changes.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Iterator

from xgrid.formats import get_format
from xgrid.tasks.spec import TaskSpec


class UnknownTaskError(KeyError):
    def __init__(self, name: str, suggestions: list[str]):
        hint = f"; did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        super().__init__(f"unknown task {name!r}{hint}")
        self.name = name
        self.suggestions = suggestions

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]

    def __reduce__(self):  # a pickled copy (Ray's) is rebuilt from both arguments, not from the message alone
        return (type(self), (self.name, self.suggestions))


@dataclass(frozen=True)
class TaskSelection:
    """A task and the languages a name selected: `xnli` -> all of them, `xnli.de` -> just German."""

    task: TaskSpec
    languages: tuple[str, ...]


class TaskRegistry:
    def __init__(self, entries: Iterable[TaskSpec] = ()):
        self._tasks: dict[str, TaskSpec] = {}
        for spec in entries:
            self.add(spec)

    def add(self, spec: TaskSpec) -> TaskSpec:
        if spec.name in self._tasks:
            raise ValueError(f"task {spec.name!r} is registered twice")
        if "." in spec.name:
            raise ValueError(f"task name {spec.name!r} must not contain '.': it separates the language variant")
        self._tasks[spec.name] = spec
        return spec

    def __contains__(self, name: str) -> bool:
        try:
            self.select(name)
        except UnknownTaskError:
            return False
        return True

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(sorted(self._tasks.values(), key=lambda t: t.name))

    def __len__(self) -> int:
        return len(self._tasks)

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def suggest(self, name: str) -> list[str]:
        return difflib.get_close_matches(name, self.names(), n=2, cutoff=0.6)

    def get(self, name: str) -> TaskSpec:
        return self.select(name).task

    def select(self, name: str) -> TaskSelection:
        base, _, language = name.partition(".")
        spec = self._tasks.get(base)
        if spec is None:
            raise UnknownTaskError(name, self.suggest(base))
        if not language:
            return TaskSelection(spec, spec.languages)
        if language not in spec.languages:
            raise UnknownTaskError(name, [spec.variant(lang) for lang in difflib.get_close_matches(
                language, spec.languages, n=2, cutoff=0.5)])
        return TaskSelection(spec, (language,))

    def trains(self, task: TaskSpec) -> bool:
        """Whether a task is fine-tuned on, or scored from the encoder as it is (retrieval): its format says."""
        return get_format(task.format).trains

    def train_task_of(self, target: TaskSpec) -> TaskSpec:
        """The task whose English training data a target fine-tunes on (itself unless it names another)."""
        return self.get(target.train_task) if target.train_task else target
