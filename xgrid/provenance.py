"""Where a search's numbers came from: the code (xgrid's version and git commit), the libraries, and the exact
revision of every base model and data set it reads, as found on this machine when the search starts.

`collect` never fails: what cannot be found is written down as such ("uncached", None), since a search must not
stop because its record is incomplete. The runner writes the result to the search folder (provenance.json) and
the tracker keeps it with the search's parent run.

Revisions come from the local Hugging Face cache, which is what a run reads (searches run offline from what
`xgrid prefetch` cached): `<cache>/<kind>s--<org>--<name>/refs/<revision>` holds the commit hash a branch or tag
resolved to when it was downloaded.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xgrid.config import EMBEDDED_TINY, SearchSpace
from xgrid.models.identity import local_folder, model_identity

if TYPE_CHECKING:
    from xgrid.planning.plan import Plan
    from xgrid.tasks.spec import TaskSpec

FILE_NAME = "provenance.json"
LIBRARIES = ("torch", "transformers", "ray", "mlflow", "optuna", "datasets")
UNCACHED = "uncached"
EMBEDDED = "embedded"
GIT_TIMEOUT_S = 10  # a git on a slow network file system must not hold up the search's start
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


# --- code and libraries ------------------------------------------------------------------------------------
def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):  # no git, a folder that vanished, a hung git
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def source_commit(folder: Path) -> dict[str, Any]:
    """{"commit": sha, "dirty": bool} of the git checkout `folder` is tracked in, or both None when it is not a
    checkout (an installed wheel). The folder's own `__init__.py` must be tracked: a virtual environment inside
    some other repository would otherwise report that repository's commit."""
    if _git(folder, "ls-files", "--error-unmatch", "__init__.py") is None:
        return {"commit": None, "dirty": None}
    commit = _git(folder, "rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    # Tracked files only: an untracked scratch file in the checkout does not change what xgrid runs.
    status = _git(folder, "status", "--porcelain", "--untracked-files=no", "--", ".")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def code_provenance() -> dict[str, Any]:
    import xgrid

    return {"version": package_version("xgrid") or getattr(xgrid, "__version__", None),
            **source_commit(Path(xgrid.__file__).resolve().parent)}


# --- hub revisions ----------------------------------------------------------------------------------------------
def default_hub_cache() -> Path:
    import huggingface_hub.constants

    return Path(huggingface_hub.constants.HF_HUB_CACHE)


def cached_revision(repo_id: str, kind: str, cache: Path, revision: str | None = None) -> str:
    """The commit hash `revision` (default: main) of a hub repo resolved to in the local cache, or "uncached".
    `kind` is "model" or "dataset"."""
    folder = cache / f"{kind}s--{repo_id.replace('/', '--')}"
    wanted = revision or "main"
    if _COMMIT.match(wanted):  # pinned to a commit: no ref file, the snapshot folder carries the hash
        return wanted if (folder / "snapshots" / wanted).is_dir() else UNCACHED
    try:
        found = (folder / "refs" / wanted).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return UNCACHED
    return found if _COMMIT.match(found) else UNCACHED


def model_revision(source: str, microbench_seed: int, cache: Path) -> dict[str, Any]:
    """A base model: the embedded tiny model by the seed it is built from, a local folder by the content key its
    checkpoints carry (`xgrid.models.identity`), a hub id by its cached commit."""
    if source == EMBEDDED_TINY:
        return {"source": source, "revision": EMBEDDED, "microbench_seed": microbench_seed}
    if local_folder(source) is not None:
        return {"source": source, "revision": model_identity(source)["content"]}
    if source.startswith(("/", ".", "~")):  # a folder that is not on this machine
        return {"source": source, "revision": None, "note": "local folder not found here"}
    return {"source": source, "revision": cached_revision(source, "model", cache)}


def hub_sources(source: Any) -> list[Any]:
    """Every hub source a task's source reads: itself, those some (language, role) is sent to, and the hub data a
    wrapping source falls back on (BUCC's gold pairs, when its official files are not given)."""
    from xgrid.data.hub import HubSource

    found, pending = [], [source]
    while pending:
        current = pending.pop()
        if isinstance(current, HubSource):
            if current not in found:
                found.append(current)
                pending += list(current.overrides.values())
        elif isinstance(getattr(current, "hub", None), HubSource):
            pending.append(current.hub)
    return found


def dataset_revision(task: "TaskSpec", space: SearchSpace, cache: Path) -> dict[str, Any]:
    """A task's data: the embedded micro-benchmark by its seed, a local copy or corpus by its folder, hub data by
    the repo and commit of each hub dataset behind it."""
    source = task.source
    if source.seeded_by_microbench:
        return {"source": source.describe(), "revision": EMBEDDED, "microbench_seed": space.microbench_seed}
    if task.name in space.local_paths:
        return {"source": source.describe(), "local_path": space.local_paths[task.name]}
    hubs = hub_sources(source)
    if not hubs:
        return {"source": source.describe(), "revision": None, "note": "reads local files only"}
    return {"source": source.describe(),
            "hub": [{"repo": h.path, "requested": h.revision or "main",
                     "revision": cached_revision(h.path, "dataset", cache, h.revision)} for h in hubs]}


def tasks_read(plan: "Plan") -> dict[str, "TaskSpec"]:
    """Every task whose data the plan reads (what `xgrid prefetch` fetches), by name."""
    from xgrid.planning.needs import dataset_needs

    return dict(sorted({task.name: task for task, _ in dataset_needs(plan)}.items()))


# --- the record ---------------------------------------------------------------------------------------------
def collect(plan: "Plan", hub_cache: Path | None = None) -> dict[str, Any]:
    cache, space = hub_cache or default_hub_cache(), plan.space
    return {"xgrid": code_provenance(),
            "python": platform.python_version(),
            "libraries": {name: package_version(name) for name in LIBRARIES},
            "base_models": {b.name: _safely(model_revision, b.source, space.microbench_seed, cache)
                            for b in space.base_models},
            "datasets": {name: _safely(dataset_revision, task, space, cache)
                         for name, task in tasks_read(plan).items()}}


def _safely(find, *args) -> dict[str, Any]:
    """One entry of the record; a failure to find it (an unreadable model file) is written down, not raised."""
    try:
        return find(*args)
    except Exception as err:  # noqa: BLE001 - the record must never stop a search
        return {"revision": None, "error": f"{type(err).__name__}: {err}"[:300]}


def write(search_dir: Path, plan: "Plan", hub_cache: Path | None = None) -> dict[str, Any]:
    record = collect(plan, hub_cache)
    (Path(search_dir) / FILE_NAME).write_text(json.dumps(record, indent=1, sort_keys=True))
    return record


def read(search_dir: Path) -> dict[str, Any] | None:
    """The record of a search folder; None when it has none or it cannot be read."""
    try:
        record = json.loads((Path(search_dir) / FILE_NAME).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def commit_label(record: dict[str, Any]) -> str:
    """A short tag value: the first 12 characters of the commit, `+dirty` when the checkout had changes, or
    "none" outside a checkout."""
    code = record.get("xgrid") or {}
    commit = code.get("commit")
    if not commit:
        return "none"
    return str(commit)[:12] + ("+dirty" if code.get("dirty") else "")
