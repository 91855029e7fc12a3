"""`xgrid search --resume [SEARCH_DIR | SPACE]`: which search folder to continue, with which space, and the exact
command that continues an interrupted one.

The folder's space.yaml is the truth (the plan is rebuilt from it, so cell ids, stage-1 keys and the Optuna
studies are the ones the interrupted search used). The positional argument is either that folder, or a space
(file or shipped name; default: the embedded micro-benchmark) whose latest unfinished search under --output-dir
is resumed: that space must then be the one the folder holds, or the resume is refused.
"""

from __future__ import annotations

import hashlib
import shlex
import urllib.parse
from pathlib import Path

from xgrid.cli.common import fail, read_space, user_errors
from xgrid.config import SearchSpace
from xgrid.search.resume import (SearchBusy, check_not_running, is_search_folder, read_state, unfinished_searches,
                                 update_state)
from xgrid.tracking_schema import default_tracking_uri

DEFAULT_OUTPUT = Path("xgrid_runs")  # search()'s --output-dir default
TRACKING_KEY = "tracking"  # search_state.json: a digest of the tracking URI and experiment (never the URI itself)


def resumed_space(space: Path | None, output_dir: Path, registry) -> tuple[Path, SearchSpace]:
    """The search folder to resume and its space; a user-facing error (exit 2) when there is none, when SPACE
    differs from the folder's, or when a live driver still runs it."""
    if space is not None and Path(space).is_dir():
        folder = Path(space).absolute()
        if not is_search_folder(folder):
            raise fail(f"--resume {space}: not a search folder (it has no plan.json and space.yaml); give the folder "
                       "`xgrid search` printed as `search folder:`, or a space to resume its latest search")
        given = None
    else:
        given = read_space(space, registry)
        found = unfinished_searches(output_dir, given.name)
        if not found:
            raise fail(f"--resume: no unfinished search of space {given.name!r} under {output_dir / given.name} "
                       "(--output-dir); give the search folder itself, or start a new search without --resume")
        folder = found[-1].absolute()
    with user_errors():
        folder_space = read_space(folder / "space.yaml", registry)
    if given is not None and given.model_dump(mode="json") != folder_space.model_dump(mode="json"):
        raise fail(f"--resume: space {space or given.name} differs from the one {folder} was started with (its "
                   "space.yaml); resume with that folder alone, or start a new search without --resume")
    try:
        check_not_running(folder)
    except SearchBusy as err:
        raise fail(f"--resume {err}") from None
    return folder, folder_space


def tracking_key(tracking_uri: str, experiment: str) -> str:
    return hashlib.sha256(f"{tracking_uri}\n{experiment}".encode()).hexdigest()[:16]


def remember_tracking(search_dir: Path, tracking_uri: str, experiment: str) -> None:
    update_state(search_dir, **{TRACKING_KEY: tracking_key(tracking_uri, experiment)})


def check_same_tracking(search_dir: Path, tracking_uri: str, experiment: str) -> None:
    """Runs of one search live in one store and experiment: a resume pointed elsewhere is refused."""
    known = read_state(search_dir).get(TRACKING_KEY)
    if known and known != tracking_key(tracking_uri, experiment):
        raise fail(f"--tracking-uri/--experiment: {search_dir} was tracked in another MLflow store or experiment "
                   f"than {redacted(tracking_uri)} / {experiment!r}; resume with the ones it was started with")


def redacted(uri: str) -> str:
    parts = urllib.parse.urlsplit(uri)
    if not parts.password:
        return uri
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def resume_command(search_dir: Path, options, tracking_uri: str, experiment: str, space_name: str) -> str:
    """The command that continues `search_dir` with the flags that point at the same places as this run
    (a tracking URI holding a password is taken from the environment, not printed)."""
    words = ["xgrid", "search", "--resume", str(search_dir)]
    output = Path(options.output_root)
    if output != DEFAULT_OUTPUT:
        words += ["--output-dir", str(output)]
    command = shlex.join(words)
    if tracking_uri != default_tracking_uri(output):
        has_secret = bool(urllib.parse.urlsplit(tracking_uri).password)
        command += " --tracking-uri " + ('"$MLFLOW_TRACKING_URI"' if has_secret else shlex.quote(tracking_uri))
    extra = []
    if options.store_root:
        extra += ["--store-root", options.store_root]
    if experiment != space_name:
        extra += ["--experiment", experiment]
    if options.address:
        extra += ["--address", options.address]
    return command + (" " + shlex.join(extra) if extra else "")
