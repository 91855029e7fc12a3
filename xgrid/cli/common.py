"""What every subcommand shares: the console, and turning bad input into exit code 2 with one clear message."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console

from pydantic import ValidationError

from xgrid.config import SearchSpace, SpaceError, format_validation_error, load_space
from xgrid.tasks import TaskRegistry

console = Console()
err_console = Console(stderr=True)

DEFAULT_SPACE = Path(__file__).resolve().parent.parent / "spaces" / "microbench_default.yaml"


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


def read_space(path: Path | None, registry: TaskRegistry) -> SearchSpace:
    with user_errors():
        return load_space(path or DEFAULT_SPACE, registry)
