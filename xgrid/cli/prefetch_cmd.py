"""`xgrid prefetch SPACE`: download everything a search space needs, on a machine with internet.

Datasets: every hub read behind every (task, language, split role) the space can touch - each intermediate task's
English train and dev splits, each target's splits in every language and its training task's English splits -
through the same `load_part` call training uses, so what lands in the `datasets` cache is exactly what a later
offline run looks up. Models: each base model that is a hub id is fetched with `huggingface_hub.snapshot_download`
(config, tokenizer files and one weight format: safetensors when the repo has them). Tasks read from local files
(CCGbank, Mewsli-X) are checked, not downloaded. Point HF_HOME (or --cache-dir) at the cache the grid will use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from xgrid.cli.common import console, fail, read_space
from xgrid.config import EMBEDDED_TINY, SearchSpace, intermediate_tasks
from xgrid.tasks import LoadContext, TaskRegistry, TaskSpec, default_registry
from xgrid.tasks.spec import MissingSplitError

ROLES = ("train", "dev", "test")
# Weight files in several formats: fetch one. Everything else a tokenizer or config needs is small.
MODEL_SMALL_FILES = ["*.json", "*.model", "*.txt", "*.tiktoken", "*.py"]


@dataclass(frozen=True)
class Need:
    task: str
    language: str
    role: str


def dataset_needs(space: SearchSpace, registry: TaskRegistry) -> list[tuple[TaskSpec, Need]]:
    """Every (task, language, split role) a run of the space may load."""
    wanted: dict[tuple[str, str, str], TaskSpec] = {}
    for entry in space.intermediates:
        for name in intermediate_tasks(entry):
            task = registry.get(name)
            for role in ("train", "dev"):
                wanted[(task.name, "en", role)] = task
    for name in space.targets:
        selection = registry.select(name)
        target, train = selection.task, registry.train_task_of(selection.task)
        if target.trains:
            for role in ("train", "dev"):
                wanted[(train.name, "en", role)] = train
        languages = selection.languages
        if target.option("pool") == "answer_sentences":  # LAReQA ranks every language's sentences
            languages = target.languages
        for language in dict.fromkeys(("en",) + tuple(languages) if "en" in target.languages else languages):
            for role in ROLES:
                wanted[(target.name, language, role)] = target
    return [(task, Need(*key)) for key, task in wanted.items()]


def model_patterns(files: list[str]) -> list[str]:
    if any(f.endswith(".safetensors") for f in files):
        return MODEL_SMALL_FILES + ["*.safetensors"]
    return MODEL_SMALL_FILES + ["*.bin"]


def fetch_model(repo_id: str, cache_dir: str | None) -> str:
    import huggingface_hub

    files = huggingface_hub.HfApi().list_repo_files(repo_id)
    return huggingface_hub.snapshot_download(repo_id, allow_patterns=model_patterns(files), cache_dir=cache_dir)


def _is_hub_id(source: str) -> bool:
    return source != EMBEDDED_TINY and not Path(source).expanduser().exists()


def prefetch(
    space: Annotated[Path, typer.Argument(help="search-space YAML whose data and models to download")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would be fetched; download nothing")] = False,
    cache_dir: Annotated[Optional[str], typer.Option(help="datasets cache folder (default: HF_HOME's)")] = None,
    models: Annotated[bool, typer.Option(help="also download the base models' weights and tokenizers")] = True,
) -> None:
    """Download every dataset split and base model a search space needs (run on a machine with internet)."""
    from xgrid.tasks.hub_sources import DatasetNotCachedError, DatasetUnavailableError, hub_offline, hub_parts, load_part

    registry = default_registry()
    config = read_space(space, registry)
    ctx = LoadContext(microbench_seed=config.microbench_seed, local_paths=dict(config.local_paths), cache_dir=cache_dir)
    parts: dict[Any, list[Need]] = {}
    local: dict[str, TaskSpec] = {}
    for task, need in dataset_needs(config, registry):
        found = hub_parts(task.source, task, need.language, need.role)
        if not hasattr(task.source, "parts"):
            local[task.name] = task
        for part in found:
            parts.setdefault(part, []).append(need)
    base_models = [m.source for m in config.base_models if _is_hub_id(m.source)] if models else []

    table = Table(title=f"prefetch {config.name}")
    for column in ("what", "config", "split", "for", "status"):
        table.add_column(column, overflow="fold")
    if not dry_run and hub_offline() and (parts or base_models):
        raise fail("HF_DATASETS_OFFLINE / HF_HUB_OFFLINE is set: prefetch downloads, unset it on a machine with "
                   "internet")
    failures = 0
    for part, needs in parts.items():
        users = sorted({n.task for n in needs})
        status = "would fetch"
        if not dry_run:
            try:
                try:
                    load_part(part, ctx, allow_network=False)
                    status = "cached"
                except DatasetNotCachedError:
                    load_part(part, ctx)
                    status = "downloaded"
            except MissingSplitError:  # e.g. UD treebanks that are test-only: nothing to fetch, nothing missing
                status = "no such split (the task skips it)"
            except Exception as err:  # noqa: BLE001 - report every failure, then exit 1
                failures += 1
                status = f"[red]failed[/]: {str(err).splitlines()[0][:200]}"
        table.add_row(part.path, part.config_label, part.split, ",".join(users), status)
    for name, task in local.items():
        try:
            task.source.load(task, "en" if "en" in task.languages else task.languages[0], "test", ctx)
            status = "local copy found"
        except DatasetUnavailableError as err:
            status = f"[yellow]local data[/]: {err}"
        except Exception as err:  # noqa: BLE001 - e.g. a local task without that split: only presence matters
            status = f"local copy found ({type(err).__name__})"
        table.add_row(name, f"local_paths.{name}", "-", name, status)
    for source in base_models:
        status = "would fetch"
        if not dry_run:
            try:
                fetch_model(source, cache_dir)
                status = "downloaded"
            except Exception as err:  # noqa: BLE001
                failures += 1
                status = f"[red]failed[/]: {str(err).splitlines()[0][:200]}"
        table.add_row(source, "model", "-", "base model", status)
    console.print(table)
    console.print(f"{len(parts)} dataset splits, {len(base_models)} models, {len(local)} local corpora"
                  + (" (dry run: nothing downloaded)" if dry_run else ""))
    if failures:
        raise fail(f"{failures} downloads failed (see the table)", code=1)
