"""`xgrid prefetch SPACE`: download everything a search space needs, on a machine with internet.

What is fetched is what the plan reads (`xgrid.planning.needs`); the fetching is `xgrid.running.prefetch`'s.
Models: each base model that is a hub id is fetched with `huggingface_hub.snapshot_download` (config, tokenizer
files and one weight format: safetensors when the repo has them). Point HF_HOME (or --cache-dir) at the cache
the grid will use.
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
) -> None:
    """Download every dataset split and base model a search space needs (run on a machine with internet)."""
    from xgrid.running.prefetch import PrefetchError, downloads, prefetch as fetch

    registry = default_registry()
    config = read_space(space, registry)
    ctx = LoadContext(microbench_seed=config.microbench_seed, local_paths=dict(config.local_paths), cache_dir=cache_dir)
    todo = downloads(build_plan(config, registry), with_models=models)
    table = Table(title=f"prefetch {config.name}")
    for column in ("what", "config", "split", "for", "status"):
        table.add_column(column, overflow="fold")
    failures = 0
    try:
        for row in fetch(todo, ctx, dry_run):
            failures += row.failed
            table.add_row(row.what, row.config, row.split, row.users, row.status)
    except PrefetchError as err:
        raise fail(str(err)) from None
    console.print(table)
    console.print(todo.summary + (" (dry run: nothing downloaded)" if dry_run else ""))
    if failures:
        raise fail(f"{failures} downloads failed (see the table)", code=1)
