"""`xgrid tasks`: the registry as a table, or as JSON for scripts (`--json`)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from xgrid.cli.common import FormatOption, JsonOption, OutputFormat, console, output_format
from xgrid.tasks import TaskSpec, default_registry


def tasks(kind: Annotated[Optional[str], typer.Option(help="only this kind (syntactic, semantic, ner, other)")] = None,
          targets: Annotated[bool, typer.Option("--targets", help="only target tasks")] = False,
          fmt: FormatOption = None, as_json: JsonOption = False) -> None:
    """List every registered task: name, format, kind, role, languages and data source."""
    shown = [task for task in default_registry()
             if not (kind and task.kind != kind) and not (targets and not task.is_target)]
    if output_format(fmt, as_json) is OutputFormat.json:
        console.print_json(data=[task_json(task) for task in shown])
        return
    table = Table(title="xgrid task registry", show_lines=False)
    for column in ("name", "format", "kind"):
        table.add_column(column, no_wrap=True)  # the names people type: never folded
    for column in ("role", "languages", "source"):
        table.add_column(column, overflow="fold")
    for task in shown:
        role = f"target ({task.group})" if task.is_target else "intermediate"
        langs = ",".join(task.languages) if len(task.languages) <= 8 else f"{len(task.languages)}: " + ",".join(
            task.languages[:6]) + ",..."
        table.add_row(task.name, task.format, task.kind, role, langs, task.source.describe())
    console.print(table)
    console.print(f"{len(shown)} tasks")


def task_json(task: TaskSpec) -> dict[str, Any]:
    """One registry entry for scripts: the table's columns, with every language rather than the first six."""
    return {"name": task.name, "format": task.format, "kind": task.kind,
            "role": "target" if task.is_target else "intermediate", "group": task.group,
            "languages": list(task.languages), "source": str(task.source.describe()), "metric": task.metric}
