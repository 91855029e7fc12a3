"""`xgrid`: the command line. Each subcommand lives in its own module; this file only assembles them."""

import sys

import typer
from typer.core import TyperGroup

from xgrid.cli import compare_cmd, prefetch_cmd, search_cmd, status_cmd, tasks_cmd
from xgrid.cli.common import fail


class OneLineErrors(TyperGroup):
    """A flag that click itself refuses (an unknown option, a value not among the choices, a missing argument)
    is one `error:` line naming the flag and exit 2, like every other bad input; click's default is a usage
    panel of six lines. `--help` and everything a command decides are unchanged."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except typer.Abort:
            sys.exit(1)
        except typer.TyperException as err:  # typer's own click: UsageError, BadParameter, NoSuchOption ...
            if not hasattr(err, "format_message"):
                raise
            message = "; ".join(line.strip() for line in err.format_message().splitlines() if line.strip())
            fail(message.replace("Value error, ", ""), code=err.exit_code)
            sys.exit(err.exit_code)
        # Not standalone, click returns the command's exit code (typer.Exit) or its return value (None).
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(cls=OneLineErrors, help="Intermediate-task transfer grids for zero-shot cross-lingual NLP.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.command("tasks")(tasks_cmd.tasks)
app.command("search")(search_cmd.search)
app.command("compare")(compare_cmd.compare)
app.command("prefetch")(prefetch_cmd.prefetch)
app.command("status")(status_cmd.status)
