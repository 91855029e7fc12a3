"""`xgrid prefetch SPACE [--to DIR]`: download everything a search space needs, on a machine with internet.

What is fetched is what the plan reads (`xgrid.planning.needs`); the fetching is `xgrid.running.prefetch`'s.
Datasets go to the `datasets` cache (HF_HOME, or --cache-dir): a cluster that shares that cache reads them with
HF_DATASETS_OFFLINE=1. With `--to DIR`, a local copy of each task's data is also written to DIR/<task>
(`xgrid.data.local_copy`; licensed corpora named in `local_paths` are copied there too, base models go to
DIR/models/<owner>__<name>), and the `local_paths` lines that read them are printed. Models: each base model that
is a hub id is fetched with `huggingface_hub.snapshot_download` (config, tokenizer files and one weight format:
safetensors when the repo has them).

The hub is asked once before the first download: when it cannot be reached, prefetch stops at once with one
line (exit 1) instead of the hub client's minutes of retries per file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from xgrid.cli.common import console, fail, read_space
from xgrid.data.sources import LoadContext
from xgrid.planning.plan import build_plan
from xgrid.tasks import default_registry


def prefetch(
    space: Annotated[Path, typer.Argument(help="search-space YAML file, or the name of a shipped space, whose data and models to download")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would be fetched; download nothing")] = False,
    cache_dir: Annotated[Optional[str], typer.Option(help="datasets cache folder (default: HF_HOME's)")] = None,
    models: Annotated[bool, typer.Option(help="also download the base models' weights and tokenizers")] = True,
    to: Annotated[Optional[Path], typer.Option("--to", help="also write a local copy of each task's data to "
                                               "DIR/<task> (and models to DIR/models), for local_paths on a "
                                               "cluster without internet", metavar="DIR")] = None,
) -> None:
    """Download every dataset split and base model a search space needs (run on a machine with internet)."""
    from xgrid.running.prefetch import (HubUnreachableError, PrefetchError, copied_paths, downloads, model_folder,
                                        prefetch as fetch)

    registry = default_registry()
    config = read_space(space, registry)
    to = to.expanduser().absolute() if to is not None else None
    if to is not None and to.exists() and not to.is_dir():
        raise fail(f"--to {to}: not a folder")
    ctx = LoadContext(microbench_seed=config.microbench_seed, local_paths=dict(config.local_paths), cache_dir=cache_dir)
    todo = downloads(build_plan(config, registry), with_models=models, to=to is not None)
    table = Table(title=f"prefetch {config.name}")
    for column in ("what", "config", "split", "for", "status"):
        table.add_column(column, overflow="fold")
    failures = 0
    try:
        for row in fetch(todo, ctx, dry_run, to):
            failures += row.failed
            table.add_row(row.what, row.config, row.split, row.users, row.status)
    except HubUnreachableError as err:
        if table.row_count:
            console.print(table)
        raise fail(str(err), code=1) from None
    except PrefetchError as err:
        raise fail(str(err)) from None
    console.print(table)
    console.print(todo.summary + (" (dry run: nothing downloaded)" if dry_run else ""))
    if to is not None and not dry_run:
        models = {s: model_folder(to, s) for s in todo.models if model_folder(to, s).is_dir()}
        _print_local_paths(copied_paths(todo, to), models, to)
    if failures:
        raise fail(f"{failures} downloads failed (see the table)", code=1)


def _print_local_paths(paths: dict[str, str], models: dict[str, Path], to: Path) -> None:
    """What the space the cluster runs then says (with DIR as its nodes see it)."""
    if not paths and not models:
        return
    console.print(f"Copies written to {to}. In the space the cluster runs, with {to} as its nodes see it:",
                  soft_wrap=True, highlight=False, markup=False)
    lines = (["local_paths:"] + [f"  {name}: {path}" for name, path in paths.items()]) if paths else []
    lines += [f"base model {source}: source: {folder}" for source, folder in models.items()]
    console.print("\n".join(lines), soft_wrap=True, highlight=False, markup=False)
