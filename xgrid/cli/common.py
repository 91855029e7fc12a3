"""What every subcommand shares: the console, the --format/--json option, and turning bad input into exit
code 2 with one clear message."""

from __future__ import annotations

import difflib
import math
import os
import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, Optional, get_args

import typer
from rich.console import Console

from pydantic import ValidationError

from xgrid.config import Resources, SearchSpace, SpaceError, format_validation_error, load_space
from xgrid.redaction import redact
from xgrid.spaces import resolve_space
from xgrid.tasks import TaskRegistry

# Wider than any table or line we print. Rich renders a table at its natural width when it has room and never
# pads plain text, so a console this wide prints every table as wide as its content and every line whole.
LOG_WIDTH = 10_000


class RedactedStream:
    """sys.stdout or sys.stderr, looked up at each write (a test runner swaps them), with secrets masked
    (`xgrid.redaction`): a tracking URI's password or an S3 key never reaches a terminal or a log."""

    def __init__(self, stderr: bool, stream=None):
        self.stderr, self._stream = stderr, stream

    @property
    def stream(self):
        return self._stream or (sys.stderr if self.stderr else sys.stdout)

    def pin(self) -> "RedactedStream":
        """The same, bound to the stream of this moment (the progress keeps writing to the terminal while Tune's
        prints are sent to tune.log)."""
        return RedactedStream(self.stderr, self.stream)

    def write(self, text: str) -> int:
        return self.stream.write(redact(text))

    def __getattr__(self, name: str):  # flush, isatty, fileno, encoding ... of the stream of the moment
        return getattr(self.stream, name)


def _console(stderr: bool = False) -> Console:
    """A console that fits the terminal, or, writing to a pipe or a file, the content.

    Rich falls back to 80 columns when it cannot see a terminal, which folds a table's cells into slivers and
    breaks paths across lines in a log. An explicit COLUMNS still wins (tests and users set it on purpose).
    """
    console = Console(file=RedactedStream(stderr), stderr=stderr)
    if not console.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        console.width = LOG_WIDTH
    return console


console = _console()
err_console = _console(stderr=True)

def fail(message: str, code: int = 2) -> typer.Exit:
    from rich.markup import escape

    for line in message.splitlines():  # printed as written: `pip install 'psycopg[binary]'` is no markup tag
        err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
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


# --- flags checked as they are parsed --------------------------------------------------------------------------
# A typer/click range or choice error prints a usage panel of several lines; these parsers fail the way every
# other bad input does: one `error:` line naming the flag, exit 2. Each parser is given its flag's name, because
# typer hands a parser the value only.
def resource_flag(flag: str, field: str) -> Callable[[str], int | float]:
    """A parser for a flag that overrides a number in the space's `resources`: the same type and bounds as the
    field (read from `Resources`, so the two cannot drift apart), and finite."""
    info = Resources.model_fields[field]
    kind = info.annotation
    bounds = {name: getattr(m, name) for m in info.metadata for name in ("gt", "ge", "lt", "le")
              if getattr(m, name, None) is not None}

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise fail(f"{flag} {text}: not {'a whole number' if kind is int else 'a number'}") from None
        if not math.isfinite(value):
            raise fail(f"{flag} {text}: not a finite number")
        for name, bound, ok in (("above", bounds.get("gt"), lambda v, b: v > b),
                                ("at least", bounds.get("ge"), lambda v, b: v >= b),
                                ("below", bounds.get("lt"), lambda v, b: v < b),
                                ("at most", bounds.get("le"), lambda v, b: v <= b)):
            if bound is not None and not ok(value, bound):
                raise fail(f"{flag} {text}: must be {name} {bound:g}")
        return value

    return parse


def resource_metavar(field: str) -> str:
    """`INTEGER>=1`, `FLOAT>0`, `[auto|ray_train|inline]`: what the flag takes, for --help."""
    info = Resources.model_fields[field]
    if info.annotation in (int, float):
        low = next((f">{m.gt:g}" if getattr(m, "gt", None) is not None else f">={m.ge:g}" for m in info.metadata
                    if getattr(m, "gt", None) is not None or getattr(m, "ge", None) is not None), "")
        return ("INTEGER" if info.annotation is int else "FLOAT") + low
    return "[" + "|".join(_resource_choices(field)) + "]"


def _resource_choices(field: str) -> tuple[str, ...]:
    return get_args(Resources.model_fields[field].annotation)


def resource_choice_flag(flag: str, field: str) -> Callable[[str], str]:
    """A parser for a flag that overrides a `resources` field with fixed choices (the space's own list)."""
    choices = _resource_choices(field)

    def parse(text: str) -> str:
        if text in choices:
            return text
        close = difflib.get_close_matches(text, choices, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise fail(f"{flag} {text!r}: not one of {', '.join(choices)}{hint}")

    return parse


# --- folders a run writes --------------------------------------------------------------------------------------
def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(path.anchor or ".")


def check_writable_folder(path: str | Path | None, flag: str, dry_run: bool = False) -> None:
    """Refuses (exit 2, one line naming the flag and the path) a folder that a run could not create or write:
    the path is a file, a file stands where one of its parents should be, or the nearest existing parent is not
    writable. Creates nothing. A URL (s3://) is its file system's business and passes.

    A dry run writes nothing and may plan a run for another machine, so it refuses only a file in the way (no
    machine can use that path): a folder that is not writable here may well be writable there. Writability is
    asked with os.access, which is what the process can do (it also sees a read-only mount, even for root)."""
    if path is None or ("://" in str(path) and not str(path).startswith("file://")):
        return
    folder = Path(str(path).removeprefix("file://")).expanduser().absolute()
    try:
        existing = _nearest_existing(folder)
        if existing.is_dir():
            if not dry_run and not os.access(existing, os.W_OK | os.X_OK):
                where = "is" if existing == folder else f"cannot be made: {existing} is"
                raise fail(f"{flag} {path}: {where} not writable")
            return
    except OSError as err:  # a name too long, a broken mount
        raise fail(f"{flag} {path}: {err.strerror or err}") from None
    what = "a file" if existing.is_file() else "a broken link" if existing.is_symlink() else "not a folder"
    if existing == folder:
        raise fail(f"{flag} {path}: is {what}, not a folder")
    raise fail(f"{flag} {path}: cannot be made: {existing} is {what}")


def check_output_folders(output_dir: Path, store_root: str | None, dry_run: bool = False) -> None:
    """The output folder and the stage-1 store (by default `<output-dir>/store`), before anything starts."""
    check_writable_folder(output_dir, "--output-dir", dry_run)
    if store_root is None:
        check_writable_folder(Path(output_dir) / "store", "--output-dir", dry_run)  # names <dir>/store
    else:
        check_writable_folder(store_root, "--store-root", dry_run)
