"""Local copies of hub datasets: what `local_paths.<task>` names for a task whose data is on the hub, and what
`xgrid prefetch SPACE --to DIR` writes (`DIR/<task>`), for a cluster without internet.

A task reads hub *parts*, (dataset, config, split): XNLI in German is (facebook/xnli, de, test). A local copy of
a task is one folder holding, for each dataset the task reads, a folder named after the dataset (`/` -> `__`),
and in it one folder per config and split, as the hub's parquet conversion lays a dataset out (a repository's
`refs/convert/parquet` branch):

    DIR/udpos/                                      local_paths: {udpos: DIR/udpos}
      google__xtreme/udpos.English/train/0000.parquet
      google__xtreme/udpos.German/test/0000.parquet
      universal-dependencies__universal_dependencies/lt_alksnis/test/0000.parquet

`default` is the config of a dataset without configs (rajpurkar__squad/default/train). A config folder without
a folder for a split means the dataset has no such split: the task skips it, as it does on the hub. Datasets a
task borrows are in its copy too (XQuAD's English dev is SQuAD's: DIR/xquad/rajpurkar__squad/default/validation).

Copies made another way are read too. In a dataset's folder (or in the copy's folder itself, when it has no
folder named after the dataset) a part may be:
  * `<config>/<split>/` written by `Dataset.save_to_disk`, so a `DatasetDict.save_to_disk(<config folder>)`;
    for a dataset without configs, a `DatasetDict.save_to_disk` of the folder itself;
  * `<config>/<split>-*.parquet` (or .arrow, .jsonl, .json, .csv): a hub repository's own files;
  * anything `datasets.load_dataset(<folder>, <config>, split=<split>)` reads, when the folder has the
    repository's README.md (whose YAML header names the configs' files).
Rows are the raw hub rows: the task's filters and transforms run on them as on a hub read, so a copy serves
every language and split role its task needs. Every form is read through one of `datasets`' packaged builders,
with the hub switched off, into this node's own `datasets` cache: the copy is only read, never written to, so it
can sit on a read-only shared file system, and featurized rows are cached per node as for a hub read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import datasets

from xgrid.data.sources import LocalDataMissingError, MissingSplitError, hub_switched_off

DEFAULT_CONFIG = "default"
WRITTEN_FILE = "0000.parquet"
BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".jsonl": "json", ".json": "json", ".csv": "csv"}
SAVED_METADATA = {"state.json", "dataset_info.json", "dataset_dict.json"}
COPY_COMMAND = "xgrid prefetch SPACE --to DIR"


def dataset_folder(path: str) -> str:
    """`google/xtreme` -> `google__xtreme`: one folder name per hub dataset."""
    return path.replace("/", "__")


def config_folder(part: Any) -> str:
    """The config a part reads: its name, the first folder of its data-files pattern (UD treebanks read as
    `<treebank>/<split>/*.parquet`), or `default`."""
    if part.name:
        return part.name
    if part.data_files and "/" in part.data_files:
        return part.data_files.split("/")[0]
    return DEFAULT_CONFIG


def _data_files(folder: Path, split: str | None = None) -> list[Path]:
    files = [f for f in sorted(folder.iterdir()) if f.is_file() and f.suffix in BUILDERS
             and f.name not in SAVED_METADATA and not f.name.startswith(".")]
    if split is not None:
        files = [f for f in files if f.stem == split or f.name.startswith(f"{split}-")]
    return files


def _read_files(files: list[Path], split: str, cache_dir: str | None, features=None) -> datasets.Dataset:
    builders = {BUILDERS[f.suffix] for f in files}
    if len(builders) != 1:
        raise ValueError(f"mixed data files in one split: {', '.join(f.name for f in files)}")
    with hub_switched_off():
        return datasets.load_dataset(builders.pop(), data_files={split: [str(f) for f in files]}, split=split,
                                     features=features, cache_dir=cache_dir)


def _read_split_folder(folder: Path, split: str, cache_dir: str | None) -> datasets.Dataset | None:
    """One split's folder: a `Dataset.save_to_disk` folder, or data files (parquet conversion layout)."""
    state = folder / "state.json"
    if state.is_file():
        files = [folder / f["filename"] for f in json.loads(state.read_text())["_data_files"]]
        info = json.loads((folder / "dataset_info.json").read_text())
        features = datasets.Features.from_dict(info["features"]) if info.get("features") else None
        return _read_files(files, split, cache_dir, features)
    files = _data_files(folder)
    return _read_files(files, split, cache_dir) if files else None


def read_copy(part: Any, task: str, root: str, cache_dir: str | None = None) -> datasets.Dataset:
    """One hub part from the local copy at `root` (`local_paths.<task>`). MissingSplitError when the copy says
    the dataset has no such split; LocalDataMissingError (one line: what, where it looked) when it lacks it."""
    base = Path(root)
    option = f"local_paths.{task}"
    if not base.is_dir():
        what = "a file, not the folder of a copy" if base.exists() else "which does not exist on this machine"
        raise LocalDataMissingError(f"{option} is {root!r}, {what}; `{COPY_COMMAND}` writes a copy of every "
                                    f"dataset a space reads to DIR/<task>")
    folder = base / dataset_folder(part.path)
    if not folder.is_dir():
        folder = base
    config = config_folder(part)
    places = [folder / config] + ([folder] if config == DEFAULT_CONFIG else [])
    for place in places:
        if not place.is_dir():
            continue
        if (place / part.split).is_dir():
            rows = _read_split_folder(place / part.split, part.split, cache_dir)
            if rows is not None:
                return rows
        elif files := _data_files(place, part.split):
            return _read_files(files, part.split, cache_dir)
        elif place is not folder or (folder / "dataset_dict.json").is_file():
            # The config is there and this split is not: the dataset has none (e.g. a test-only treebank).
            raise MissingSplitError(f"{option}: {part.path} config {config!r} has no split {part.split!r}")
    if (folder / "README.md").is_file():  # a repository clone: its README says where each config's files are
        return _read_declared(folder, part, config, option, cache_dir)
    looked = f"{folder / config / part.split}/ or {folder / config / part.split}-*.parquet"
    raise LocalDataMissingError(
        f"{option} ({root!r}) holds no copy of {part.path} config {config!r} split {part.split!r} (looked for "
        f"{looked}); `{COPY_COMMAND}` writes a complete copy to DIR/{task}")


def _read_declared(folder: Path, part: Any, config: str, option: str, cache_dir: str | None) -> datasets.Dataset:
    kwargs: dict[str, Any] = {"split": part.split, "cache_dir": cache_dir}
    if part.name:
        kwargs["name"] = part.name
    if part.data_files:
        kwargs["data_files"] = {part.split: part.data_files}
    try:
        with hub_switched_off():
            return datasets.load_dataset(str(folder), **kwargs)
    except ValueError as err:
        if "Unknown split" in str(err) or "Bad split" in str(err):
            raise MissingSplitError(f"{option}: {part.path} config {config!r} has no split {part.split!r}") from None
        reason = err
    except Exception as err:  # noqa: BLE001 - whatever `datasets` says, the user gets one line naming the copy
        reason = err
    first = str(reason).strip().splitlines()[0] if str(reason).strip() else ""
    raise LocalDataMissingError(
        f"{option}: {part.path} config {config!r} split {part.split!r} cannot be read from {str(folder)!r} "
        f"({type(reason).__name__}: {first[:200]}); `{COPY_COMMAND}` writes a copy in the layout xgrid reads")


# --- writing (xgrid prefetch --to) ------------------------------------------------------------------------------
def part_folder(part: Any, task_root: Path) -> Path:
    return Path(task_root) / dataset_folder(part.path) / config_folder(part) / part.split


def write_copy(rows: datasets.Dataset, part: Any, task_root: Path) -> Path:
    """Write one part's raw rows as `<dataset>/<config>/<split>/0000.parquet` under `task_root` (replacing an
    earlier copy of it whole: a half-written split is never left where a reader looks)."""
    target = part_folder(part, task_root)
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    rows.to_parquet(str(staging / WRITTEN_FILE))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def note_missing_split(part: Any, task_root: Path) -> None:
    """The hub has no such split: its config folder exists without it, which a reader takes as 'no split'."""
    part_folder(part, task_root).parent.mkdir(parents=True, exist_ok=True)


__all__ = ["COPY_COMMAND", "DEFAULT_CONFIG", "config_folder", "dataset_folder", "note_missing_split", "part_folder",
           "read_copy", "write_copy"]
