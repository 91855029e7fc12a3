"""Which data a plan will read: every (task, language, split role) its phases may load. `xgrid prefetch` fetches
exactly these, through the same loading call training uses, so a later offline run finds what it looks up.

Read off the resolved plan (its jobs' and cells' TaskSpecs), never re-derived from the space's names.
"""

from __future__ import annotations

from dataclasses import dataclass

from xgrid.formats import get_format
from xgrid.planning.plan import Plan
from xgrid.tasks import TaskSpec

ROLES = ("train", "dev", "test")


@dataclass(frozen=True)
class Need:
    task: str
    language: str
    role: str


def dataset_needs(plan: Plan) -> list[tuple[TaskSpec, Need]]:
    """Every (task, language, split role) a run of the plan may load: each intermediate task's English train and
    dev splits; each target's training task's English train and dev splits; every split of every language a
    target evaluates (a task that lacks one skips it)."""
    wanted: dict[tuple[str, str, str], TaskSpec] = {}
    for job in plan.trained_jobs:
        for task in job.task_specs:
            for role in ("train", "dev"):
                wanted[(task.name, "en", role)] = task
    for cell in plan.cells:
        target = cell.target_task
        if cell.trains:
            for role in ("train", "dev"):
                wanted[(cell.train_task.name, "en", role)] = cell.train_task
        # LAReQA's candidate pool holds every language's sentences, whichever languages are evaluated.
        languages = target.languages if get_format(target.format).reads_every_language else cell.languages
        for language in languages:
            for role in ROLES:
                wanted[(target.name, language, role)] = target
    return [(task, Need(*key)) for key, task in wanted.items()]
