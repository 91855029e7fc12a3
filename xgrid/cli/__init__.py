"""`xgrid`: the command line. Each subcommand lives in its own module; this file only assembles them."""

import typer

from xgrid.cli import compare_cmd, prefetch_cmd, search_cmd, status_cmd, tasks_cmd

app = typer.Typer(help="Intermediate-task transfer grids for zero-shot cross-lingual NLP.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.command("tasks")(tasks_cmd.tasks)
app.command("search")(search_cmd.search)
app.command("compare")(compare_cmd.compare)
app.command("prefetch")(prefetch_cmd.prefetch)
app.command("status")(status_cmd.status)
