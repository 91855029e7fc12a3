"""`xgrid tasks`: the registry as a table."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from xgrid.cli.common import console
from xgrid.tasks import default_registry


def tasks(kind: Annotated[Optional[str], typer.Option(help="only this kind (syntactic, semantic, ner, other)")] = None,
          targets: Annotated[bool, typer.Option("--targets", help="only target tasks")] = False) -> None:
    """List every registered task: name, format, kind, role, languages and data source."""
    table = Table(title="xgrid task registry", show_lines=False)
    for column in ("name", "format", "kind"):
        table.add_column(column, no_wrap=True)  # the names people type: never folded
    for column in ("role", "languages", "source"):
        table.add_column(column, overflow="fold")
    shown = 0
    for task in default_registry():
        if (kind and task.kind != kind) or (targets and not task.is_target):
            continue
        role = f"target ({task.group})" if task.is_target else "intermediate"
        langs = ",".join(task.languages) if len(task.languages) <= 8 else f"{len(task.languages)}: " + ",".join(
            task.languages[:6]) + ",..."
        table.add_row(task.name, task.format, task.kind, role, langs, task.source.describe())
        shown += 1
    console.print(table)
    console.print(f"{shown} tasks")
