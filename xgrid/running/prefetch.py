"""`xgrid prefetch`'s work: fetch every dataset split and base model a plan needs into the caches an offline
run reads, through the same `load_part` call training uses, and with `to` also write local copies of them
(`xgrid.data.local_copy`) that `local_paths.<task>: <to>/<task>` then reads on a cluster without internet.

Tasks read from local files (CCGbank, Mewsli-X) are checked, not downloaded (with `to`, their folders are copied);
tasks whose `local_paths` already name a local copy are checked by reading it. The hub is asked once before the
first download (`probe_hub`); when it cannot be reached, or downloads keep failing on the connection, prefetching
stops with `HubUnreachableError` (one line: where it stopped and why) instead of letting the hub client retry
every file. Yields one row per item so the CLI only prints.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from xgrid.data import hub
from xgrid.data.hub import DatasetNotCachedError, HubPart, hub_offline, hub_parts, load_part
from xgrid.data.local_copy import dataset_folder, note_missing_split, write_copy
from xgrid.data.sources import DatasetUnavailableError, LoadContext, MissingSplitError, local_data
from xgrid.models import hub as model_hub
from xgrid.planning.needs import Need, dataset_needs
from xgrid.planning.plan import Plan
from xgrid.tasks import TaskSpec

# Downloads that fail on the connection, one after the other, before prefetching gives up (the hub client
# retries each file for ~30 s on its own first).
MAX_FAILURES_IN_A_ROW = 3
MODELS_FOLDER = "models"


class PrefetchError(RuntimeError):
    """Prefetching cannot start as asked (one line for the user; exit 2)."""


class HubUnreachableError(PrefetchError):
    """The hub cannot be reached, or stopped answering: one summary line (exit 1)."""


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
    local: dict[str, TaskSpec]  # tasks read from local files (with `to`: their folders are copied)
    models: list[str]  # hub ids of base models
    copies: dict[str, tuple[TaskSpec, list[Need]]] = field(default_factory=dict)  # tasks read from local copies

    @property
    def summary(self) -> str:
        copies = f", {len(self.copies)} local copies" if self.copies else ""
        return f"{len(self.parts)} dataset splits, {len(self.models)} models, {len(self.local)} local corpora{copies}"


def downloads(plan: Plan, with_models: bool = True, to: bool = False) -> Downloads:
    """What prefetching does for the plan. Without `to`, a hub task whose `local_paths` names a copy is read
    from it (nothing to fetch); with `to`, every hub part is fetched, to write the copies from."""
    parts: dict = {}
    local: dict[str, TaskSpec] = {}
    copies: dict[str, tuple[TaskSpec, list[Need]]] = {}
    paths = plan.space.local_paths
    for task, need in dataset_needs(plan):
        if not hasattr(task.source, "parts"):
            local[task.name] = task
            continue
        if task.name in paths and not to:
            copies.setdefault(task.name, (task, []))[1].append(need)
            continue
        if task.name in paths and local_data(task.source) == "files":  # BUCC's official files: copied as well
            local[task.name] = task
        for part in hub_parts(task.source, task, need.language, need.role):
            parts.setdefault(part, []).append(need)
    models = [m.source for m in plan.space.base_models if model_hub.is_hub_id(m.source)] if with_models else []
    return Downloads(parts, local, models, copies)


@dataclass
class _Hub:
    """Whether the hub answers, and how the downloads have gone: what a stop's summary says."""

    total: int
    probed: bool = False
    in_a_row: int = 0
    done: int = 0
    downloaded: int = 0
    cached: int = 0

    def reachable(self, repo: str, repo_type: str = "dataset") -> None:
        if self.probed:
            return
        reason = hub.probe_hub(repo, repo_type)
        if reason is not None:
            raise HubUnreachableError(self._unreachable(reason))
        self.probed = True

    def failed_on_connection(self, repo: str, repo_type: str, error: str) -> None:
        self.in_a_row += 1
        reason = hub.probe_hub(repo, repo_type)  # one quick request tells a hub that went away from a bad file
        if reason is not None:
            raise HubUnreachableError(self._unreachable(reason))
        if self.in_a_row >= MAX_FAILURES_IN_A_ROW:
            raise HubUnreachableError(
                f"{self.in_a_row} downloads in a row failed on the connection to the Hugging Face hub at "
                f"{hub.hub_endpoint()} (last: {error}); {self._progress()}. Run it again when the hub answers: "
                f"what is cached is kept")

    def _progress(self) -> str:
        return (f"stopped after {self.done} of {self.total} dataset splits ({self.downloaded} downloaded, "
                f"{self.cached} already cached)")

    def _unreachable(self, reason: str) -> str:
        where = f"cannot reach the Hugging Face hub at {hub.hub_endpoint()} ({reason})"
        if self.downloaded:
            return f"{where}; {self._progress()}. Run it again when the hub answers: what is cached is kept"
        cached = f" ({self.cached} of {self.total} dataset splits were already cached)" if self.cached else ""
        return (f"{where}; nothing was downloaded{cached}. Run `xgrid prefetch` on a machine with internet (then "
                f"share its HF_HOME with this one, or write copies with --to DIR), or set HF_ENDPOINT to a hub "
                f"mirror this machine reaches")


def prefetch(todo: Downloads, ctx: LoadContext, dry_run: bool, to: Path | None = None) -> Iterator[Row]:
    offline = hub_offline()
    if not dry_run and offline and to is None and (todo.parts or todo.models):
        raise PrefetchError("HF_DATASETS_OFFLINE / HF_HUB_OFFLINE is set: prefetch downloads, unset it on a "
                            "machine with internet (or give --to DIR to copy what the cache already holds)")
    state = _Hub(total=len(todo.parts))
    for part, needs in todo.parts.items():
        tasks = sorted({n.task for n in needs})
        users = ",".join(tasks)
        if dry_run:
            yield Row(part.path, part.config_label, part.split, users,
                      "would fetch" + (f" and copy to {to}/<task>" if to else ""))
            continue
        status, failed, rows = _fetch_part(part, ctx, offline, state)
        state.done += 1
        if to is not None and not failed:
            for task in tasks:
                if rows is None:
                    note_missing_split(part, to / task)
                else:
                    write_copy(rows, part, to / task)
            if rows is not None:
                status += f"; copied to {to}/{tasks[0] if len(tasks) == 1 else '{' + users + '}'}"
        yield Row(part.path, part.config_label, part.split, users, status, failed)
    for name, (task, needs) in todo.copies.items():
        status, failed = ("would check", False) if dry_run else _check_copy(task, needs, ctx)
        yield Row(name, f"local_paths.{name}", "-", name, status, failed)
    for name, task in todo.local.items():
        status = _copy_local(name, task, ctx, to, dry_run) if to is not None else _check_local(task, ctx)
        yield Row(name, f"local_paths.{name}", "-", name, status)
    for source in todo.models:
        status, failed = "would fetch" + (f" and copy to {model_folder(to, source)}" if to else ""), False
        if not dry_run:
            status, failed = _fetch_model(source, ctx, offline, state, to)
        yield Row(source, "model", "-", "base model", status, failed)


def _fetch_part(part: HubPart, ctx: LoadContext, offline: bool, state: _Hub):
    """(status, failed, rows): rows None when the split does not exist or the read failed."""
    try:
        rows = load_part(part, ctx, allow_network=False)
        state.cached += 1
        return "cached", False, rows
    except MissingSplitError:  # e.g. UD treebanks that are test-only: nothing to fetch, nothing missing
        return "no such split (the task skips it)", False, None
    except DatasetNotCachedError:
        pass
    except Exception as err:  # noqa: BLE001 - report every failure, then exit 1
        return f"[red]failed[/]: {_first_line(err)}", True, None
    if offline:
        return "[red]failed[/]: not in the cache (offline mode: only the cache is read)", True, None
    state.reachable(part.path)
    try:
        rows = load_part(part, ctx)
    except MissingSplitError:
        state.in_a_row = 0
        return "no such split (the task skips it)", False, None
    except Exception as err:  # noqa: BLE001 - report every failure, then exit 1
        if hub.is_connection_error(err):
            state.failed_on_connection(part.path, "dataset", _first_line(err.__cause__ or err))
        else:
            state.in_a_row = 0
        return f"[red]failed[/]: {_first_line(err)}", True, None
    state.in_a_row = 0
    state.downloaded += 1
    return "downloaded", False, rows


def _fetch_model(source: str, ctx: LoadContext, offline: bool, state: _Hub, to: Path | None) -> tuple[str, bool]:
    import huggingface_hub

    try:
        if offline:
            folder = huggingface_hub.snapshot_download(source, cache_dir=ctx.cache_dir, local_files_only=True)
            status = "cached"
        else:
            state.reachable(source, "model")
            folder = model_hub.fetch_model(source, ctx.cache_dir)
            status = "downloaded"
            state.in_a_row = 0
    except HubUnreachableError:
        raise
    except Exception as err:  # noqa: BLE001 - report every failure, then exit 1
        if not offline and hub.is_connection_error(err):
            state.failed_on_connection(source, "model", _first_line(err))
        return f"[red]failed[/]: {_first_line(err)}", True
    if to is not None:
        target = model_folder(to, source)
        shutil.copytree(folder, target, dirs_exist_ok=True)  # the cache's links become files
        status += f"; copied to {target}"
    return status, False


def _check_copy(task: TaskSpec, needs: list[Need], ctx: LoadContext) -> tuple[str, bool]:
    path = ctx.local_paths[task.name]
    found = 0
    for need in needs:
        try:
            task.source.load(task, need.language, need.role, ctx)
            found += 1
        except MissingSplitError:
            continue
        except DatasetUnavailableError as err:
            if not Path(path).exists():  # it may well be on the cluster: say so, do not fail
                return f"[yellow]local copy[/]: {err}", False
            return f"[red]local copy incomplete[/]: {err}", True
    return f"local copy found ({found} splits read from {path}; not downloaded)", False


def model_folder(to: Path, source: str) -> Path:
    """Where `--to` puts a base model: DIR/models/<owner>__<name> (a `base_models[].source` folder)."""
    return to / MODELS_FOLDER / dataset_folder(source)


def _copy_local(name: str, task: TaskSpec, ctx: LoadContext, to: Path, dry_run: bool) -> str:
    """A local corpus (licensed, or not on the hub) goes into the copies as it is: DIR/<task>."""
    source = ctx.local_paths.get(name)
    target = to / name
    what = getattr(task.source, "what", "its files")
    if not source or not Path(source).exists():
        return f"[yellow]local data[/]: not on the hub; put {what} in {target} yourself"
    if dry_run:
        return f"would copy from {source} to {target}"
    if Path(source).resolve() != target.resolve():
        shutil.copytree(source, target, dirs_exist_ok=True)
    return f"copied from {source} to {target}"


def _check_local(task: TaskSpec, ctx: LoadContext) -> str:
    try:
        task.source.load(task, "en" if "en" in task.languages else task.languages[0], "test", ctx)
        return "local copy found"
    except DatasetUnavailableError as err:
        return f"[yellow]local data[/]: {err}"
    except Exception as err:  # noqa: BLE001 - e.g. a local task without that split: only presence matters
        return f"local copy found ({type(err).__name__})"


def copied_paths(todo: Downloads, to: Path) -> dict[str, str]:
    """`local_paths` entries for the task copies written under `to` (what the space on the cluster sets)."""
    names = {n.task for needs in todo.parts.values() for n in needs} | set(todo.local)
    return {name: str(to / name) for name in sorted(names) if (to / name).is_dir()}


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0][:200] if str(err) else type(err).__name__


__all__ = ["Downloads", "HubUnreachableError", "MAX_FAILURES_IN_A_ROW", "PrefetchError", "Row", "copied_paths",
           "downloads", "model_folder", "prefetch"]
