"""`xgrid prefetch`'s work: fetch every dataset split and base model a plan needs into the caches an offline
run reads, through the same `load_part` call training uses. Tasks read from local files (CCGbank, Mewsli-X)
are checked, not downloaded. Yields one row per item so the CLI only prints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from xgrid.data.hub import DatasetNotCachedError, DatasetUnavailableError, hub_offline, hub_parts, load_part
from xgrid.data.sources import LoadContext, MissingSplitError
from xgrid.models import hub as model_hub
from xgrid.planning.needs import dataset_needs
from xgrid.planning.plan import Plan
from xgrid.tasks import TaskSpec


class PrefetchError(RuntimeError):
    """Prefetching cannot start as asked (one line for the user)."""


@dataclass(frozen=True)
class Row:
    what: str
    config: str
    split: str
    users: str
    status: str
    failed: bool = False


@dataclass
class Downloads:
    parts: dict  # HubPart -> the needs it serves
    local: dict[str, TaskSpec]  # tasks read from local files only
    models: list[str]  # hub ids of base models

    @property
    def summary(self) -> str:
        return f"{len(self.parts)} dataset splits, {len(self.models)} models, {len(self.local)} local corpora"


def downloads(plan: Plan, with_models: bool = True) -> Downloads:
    parts: dict = {}
    local: dict[str, TaskSpec] = {}
    for task, need in dataset_needs(plan):
        found = hub_parts(task.source, task, need.language, need.role)
        if not hasattr(task.source, "parts"):
            local[task.name] = task
        for part in found:
            parts.setdefault(part, []).append(need)
    models = [m.source for m in plan.space.base_models if model_hub.is_hub_id(m.source)] if with_models else []
    return Downloads(parts, local, models)


def prefetch(todo: Downloads, ctx: LoadContext, dry_run: bool) -> Iterator[Row]:
    if not dry_run and hub_offline() and (todo.parts or todo.models):
        raise PrefetchError("HF_DATASETS_OFFLINE / HF_HUB_OFFLINE is set: prefetch downloads, unset it on a "
                            "machine with internet")
    for part, needs in todo.parts.items():
        users = ",".join(sorted({n.task for n in needs}))
        status, failed = ("would fetch", False) if dry_run else _fetch_part(part, ctx)
        yield Row(part.path, part.config_label, part.split, users, status, failed)
    for name, task in todo.local.items():
        yield Row(name, f"local_paths.{name}", "-", name, _check_local(task, ctx))
    for source in todo.models:
        status, failed = "would fetch", False
        if not dry_run:
            try:
                model_hub.fetch_model(source, ctx.cache_dir)
                status = "downloaded"
            except Exception as err:  # noqa: BLE001 - report every failure, then exit 1
                status, failed = f"[red]failed[/]: {_first_line(err)}", True
        yield Row(source, "model", "-", "base model", status, failed)


def _fetch_part(part, ctx: LoadContext) -> tuple[str, bool]:
    try:
        try:
            load_part(part, ctx, allow_network=False)
            return "cached", False
        except DatasetNotCachedError:
            load_part(part, ctx)
            return "downloaded", False
    except MissingSplitError:  # e.g. UD treebanks that are test-only: nothing to fetch, nothing missing
        return "no such split (the task skips it)", False
    except Exception as err:  # noqa: BLE001 - report every failure, then exit 1
        return f"[red]failed[/]: {_first_line(err)}", True


def _check_local(task: TaskSpec, ctx: LoadContext) -> str:
    try:
        task.source.load(task, "en" if "en" in task.languages else task.languages[0], "test", ctx)
        return "local copy found"
    except DatasetUnavailableError as err:
        return f"[yellow]local data[/]: {err}"
    except Exception as err:  # noqa: BLE001 - e.g. a local task without that split: only presence matters
        return f"local copy found ({type(err).__name__})"


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0][:200] if str(err) else type(err).__name__


__all__ = ["Downloads", "PrefetchError", "Row", "downloads", "prefetch"]
