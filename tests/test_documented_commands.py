"""Every `xgrid ...` command the README's bash blocks and the shipped spaces' headers show runs as written.

A command that would run a search or download something runs in its `--dry-run` form (appended when absent):
that validates the space, the options and the plan without Ray, a download or a server. A cluster address is
also checked the way a real search checks it before starting (a Ray Client `ray://` address is refused).
The examples in `--help` texts name only subcommands and options that exist.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from xgrid.cli import app
from xgrid.search.options import SearchOptions
from xgrid.search.runner import SearchSetupError, check_address
from xgrid.spaces import SPACES_DIR

ROOT = Path(__file__).resolve().parent.parent
DRY_RUN = {"search", "prefetch"}  # these run a search or download: shown to work by their dry run
# Commands that cannot run here as written, and why. Keep this short: anything else must run.
EXEMPT = {
    # reads a finished search's runs from MLflow: there is none in a fresh checkout (tests/compare runs it on one)
    "xgrid compare microbench-default",
    # reads the latest search folder: there is none in a fresh checkout (tests/cli/test_search_run.py runs the
    # `xgrid status FOLDER` a finished search prints, and tests/cli/test_status_cmd.py this form)
    "xgrid status",
}


def joined_lines(lines: list[str]) -> list[str]:
    """Lines with `\\` continuations joined."""
    out: list[str] = []
    pending = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    return out


def xgrid_args(line: str) -> list[str] | None:
    """The arguments after `xgrid` of a shell line that runs xgrid (also behind `ray job submit ... --`)."""
    words = shlex.split(line, comments=True)
    for i, word in enumerate(words):
        if word == "xgrid" and (i == 0 or words[i - 1] == "--"):
            return words[i + 1:]
    return None


def readme_commands() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in joined_lines(block.splitlines()):
            if xgrid_args(line) is not None:
                found.append(("README.md", " ".join(line.split("#")[0].split())))
    return found


def header_commands() -> list[tuple[str, str]]:
    found = []
    for path in sorted(SPACES_DIR.glob("*.yaml")):
        header = []
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                break
            header.append(line[1:])
        for line in joined_lines(header):
            if line.strip().startswith(("xgrid ", "ray job submit")) and xgrid_args(line) is not None:
                found.append((f"spaces/{path.name}", " ".join(line.split("  #")[0].split())))
    return found


COMMANDS = readme_commands() + header_commands()


def test_the_commands_are_found():
    sources = {source for source, _ in COMMANDS}
    assert "README.md" in sources
    assert {f"spaces/{p.name}" for p in SPACES_DIR.glob("*.yaml")} <= sources, "every shipped space shows a command"
    assert sum(1 for _, c in COMMANDS if "--address" in c) >= 2  # the cluster forms are checked too


@pytest.mark.parametrize("source,command", COMMANDS, ids=[f"{s}: {c}" for s, c in COMMANDS])
def test_documented_command_runs_as_written(source, command, monkeypatch):
    if command in EXEMPT:
        pytest.skip(f"exempt: {command}")
    args = xgrid_args(command)
    if args and args[0] in DRY_RUN and "--dry-run" not in args:
        args.append("--dry-run")
    if args and args[0] == "search" and "--address" in args:
        address = args[args.index("--address") + 1]
        try:
            check_address(SearchOptions(address=address))
        except SearchSetupError as err:
            pytest.fail(f"{source}: `{command}` would be refused: {err}")
    for name in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "XGRID_OUTPUT_DIR", "XGRID_STORE_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(ROOT)  # the README's and the headers' relative paths are from the top of a checkout
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"{source}: xgrid {shlex.join(args)}\n{result.output}"
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


def commands() -> dict[str, click.Command]:
    group = typer.main.get_command(app)
    return {name: group.get_command(None, name) for name in group.list_commands(None)}


def help_texts() -> list[tuple[str, str]]:
    texts = []
    for name, command in commands().items():
        texts.append((f"xgrid {name} --help", command.help or ""))
        texts += [(f"xgrid {name} --help: {param.name}", getattr(param, "help", None) or "") for param in command.params]
    return texts


def test_help_examples_name_only_subcommands_and_options_that_exist():
    known = commands()
    checked = 0
    for where, text in help_texts():
        assert "ray://" not in text, f"{where}: shows a Ray Client address, which xgrid search refuses"
        for example in re.findall(r"`(xgrid[^`]*)`", text):
            words = example.split()
            assert len(words) > 1 and words[1] in known, f"{where}: `{example}` names no subcommand"
            options = {opt for param in known[words[1]].params for opt in getattr(param, "opts", [])}
            options |= {opt for param in known[words[1]].params for opt in getattr(param, "secondary_opts", [])}
            for word in words[2:]:
                if word.startswith("--"):
                    assert word.split("=")[0] in options | {"--help"}, f"{where}: `{example}`: no option {word}"
            checked += 1
    assert checked  # the help does show examples (`as xgrid search`, ...)
