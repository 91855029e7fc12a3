"""What every subcommand shares: the console, the --format/--json option, and turning bad input into exit
code 2 with one clear message."""

from __future__ import annotations

import os
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from pydantic import ValidationError

from xgrid.config import SearchSpace, SpaceError, format_validation_error, load_space
from xgrid.spaces import resolve_space
from xgrid.tasks import TaskRegistry

# Wider than any table or line we print. Rich renders a table at its natural width when it has room and never
# pads plain text, so a console this wide prints every table as wide as its content and every line whole.
LOG_WIDTH = 10_000


def _console(stderr: bool = False) -> Console:
    """A console that fits the terminal, or, writing to a pipe or a file, the content.

    Rich falls back to 80 columns when it cannot see a terminal, which folds a table's cells into slivers and
    breaks paths across lines in a log. An explicit COLUMNS still wins (tests and users set it on purpose).
    """
    console = Console(stderr=stderr)
    if not console.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        console.width = LOG_WIDTH
    return console


console = _console()
err_console = _console(stderr=True)

def fail(message: str, code: int = 2) -> typer.Exit:
    for line in message.splitlines():
        err_console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def user_errors():
    """Bad input -> `error: ...` on stderr and exit 2, never a traceback."""
    try:
        yield
    except SpaceError as err:
        raise fail(str(err)) from None
    except ValidationError as err:  # a CLI override that breaks the space's resource rules
        raise fail(format_validation_error(err)) from None


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


FormatOption = Annotated[Optional[OutputFormat], typer.Option(
    "--format", help="table (for people) or json (for scripts)", case_sensitive=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="short for --format json")]


def output_format(fmt: OutputFormat | None, as_json: bool) -> OutputFormat:
    if as_json and fmt is OutputFormat.table:
        raise fail("--json and --format table contradict each other; give one")
    return OutputFormat.json if as_json else fmt or OutputFormat.table


def read_space(path: Path | str | None, registry: TaskRegistry) -> SearchSpace:
    """A space file, or the name of a shipped space (`xgrid search xtreme-r-syntactic-vs-semantic`)."""
    with user_errors():
        return load_space(resolve_space(path), registry)
