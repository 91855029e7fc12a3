"""A training phase's state at the end of an epoch, as a folder: safetensors for tensors, JSON for the rest.

What a resumed phase needs to continue exactly where it stopped: the model weights, the optimizer and the
learning-rate schedule, every random generator (Python, NumPy, torch, the multi-task schedule, each loader's),
and the loop's own record (history, dev scores per epoch, each policy's best score and epoch with that epoch's
weights). No Ray here: the phase hands the folder to its TrainContext, which persists it.

Under FSDP (a sharded context) the weights and the optimizer state stay sharded: every rank writes its own part
(`write_shard`: torch.distributed.checkpoint folders named after the rank) into its own folder, rank 0 adds the
record, which lists every rank's files, and Ray Train merges the folders into one checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

STATE_FILE = "xgrid_checkpoint.json"  # written last: a folder without it is not a finished checkpoint
TENSORS_FILE = "state.safetensors"  # optimizer moments and generator states
FORMAT = 2  # 2: every rank's random generators (1: rank 0's alone, still read)


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be resumed from (constructible from its message: it crosses Ray)."""


def weights_file(epoch: int, rank: int | None = None) -> str:
    """An epoch's full weights (a safetensors file), or one rank's shards of them (a folder)."""
    return f"weights-epoch{epoch}.safetensors" if rank is None else f"weights-epoch{epoch}.rank{rank}"


def optimizer_shard(rank: int) -> str:
    return f"optimizer.rank{rank}"


@dataclass
class LoopState:
    epoch: int  # the last finished epoch
    history: list[dict[str, float]]
    dev_by_epoch: dict[int, dict[tuple[str, str], dict[str, float]]]
    best: dict[str, tuple[float, int]]  # policy -> (score, epoch)


@dataclass
class PhaseCheckpoint:
    folder: Path
    loop: LoopState
    optimizer: dict[str, Any] | None  # None when sharded: each rank's is in its `optimizer_shard` folder
    scheduler: dict[str, Any]
    rng: list[tuple[dict[str, Any], dict[str, torch.Tensor]]]  # by rank
    fingerprint: dict[str, Any]
    shards: int | None = None  # the number of ranks whose parts it holds; None: full weights

    def weights(self, epoch: int, rank: int | None = None) -> Path:
        return self.folder / weights_file(epoch, rank)

    def rng_of(self, rank: int, world_size: int) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """A rank's own generators: ranks draw differently (each pads its batches to its own lengths, so dropout
        draws differ), and a rank restored with another's state would not continue as it would have."""
        if len(self.rng) != world_size:
            raise CheckpointError(f"checkpoint {self.folder} was written by {len(self.rng)} rank(s); this trial "
                                  f"has {world_size}")
        return self.rng[rank]

    def optimizer_part(self, rank: int) -> Path:
        return self.folder / optimizer_shard(rank)

    def check_sharding(self, sharded: bool, world_size: int) -> None:
        """The same layout as the phase that reads it: a rank can only read its own part back."""
        layout = lambda ranks: f"the FSDP shards of {ranks} ranks" if ranks else "full weights"
        have, want = layout(self.shards), layout(world_size if sharded else None)
        if have != want:
            raise CheckpointError(f"checkpoint {self.folder} holds {have}; this trial keeps {want}")


# --- random generators ---------------------------------------------------------------------------------------
def capture_rng(schedule: random.Random, generators: dict[str, torch.Generator]) -> tuple[dict, dict]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    plain = {"python": _listed(random.getstate()), "numpy": [name, keys.tolist(), pos, has_gauss, cached],
             "schedule": _listed(schedule.getstate())}
    tensors = {"rng.torch": torch.get_rng_state()}
    tensors |= {f"rng.generator.{key}": g.get_state() for key, g in generators.items()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors |= {f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    return plain, tensors


def restore_rng(rng: tuple[dict, dict], schedule: random.Random, generators: dict[str, torch.Generator]) -> None:
    plain, tensors = rng
    random.setstate(_tupled(plain["python"]))
    name, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    schedule.setstate(_tupled(plain["schedule"]))
    torch.set_rng_state(tensors["rng.torch"])
    for key, generator in generators.items():
        generator.set_state(tensors[f"rng.generator.{key}"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k[9:]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def _listed(state: tuple) -> list:  # random.getstate(): (version, (625 ints), gauss_next)
    return [state[0], list(state[1]), state[2]]


def _tupled(state: list) -> tuple:
    return state[0], tuple(state[1]), state[2]


# --- the optimizer's state dict: tensors apart from the rest ---------------------------------------------------
def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """`{"state": {key: {name: value}}, "param_groups": [...]}`; keys are parameter indices (plain, DDP) or
    names (FSDP's full optimizer state dict), kept as they are in the JSON."""
    tensors, entries = {}, []
    for i, (key, values) in enumerate(state.get("state", {}).items()):
        plain = {}
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{i}.{name}"] = value.detach().to("cpu").contiguous()
                plain[name] = None
            else:
                plain[name] = value
        entries.append([key, plain])
    return {"entries": entries, "param_groups": state.get("param_groups", [])}, tensors


def _join_optimizer(plain: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state = {}
    for i, (key, values) in enumerate(plain["entries"]):
        state[key] = {name: tensors[f"optimizer.{i}.{name}"] if value is None else value
                      for name, value in values.items()}
    return {"state": state, "param_groups": plain["param_groups"]}


# --- the folder ------------------------------------------------------------------------------------------------
def write_shard(folder: Path, rank: int, weights: dict[int, Path], save_optimizer: Callable[[Path], None]
                ) -> dict[str, int]:
    """One rank's part of a sharded checkpoint: its shards of each kept epoch's weights (folders, linked where the
    file system allows) and, through `save_optimizer`, of the optimizer state. Returns its files' sizes by path
    relative to `folder`, for rank 0's record."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = [weights_file(epoch, rank) for epoch in weights] + [optimizer_shard(rank)]
    for epoch, source in weights.items():
        shutil.copytree(source, folder / weights_file(epoch, rank), copy_function=_link_or_copy)
    save_optimizer(folder / optimizer_shard(rank))
    return {str(path.relative_to(folder)): path.stat().st_size
            for part in parts for path in sorted((folder / part).rglob("*")) if path.is_file()}


def write_checkpoint(folder: Path, loop: LoopState, weights: dict[int, Path], optimizer: dict[str, Any] | None,
                     scheduler: dict[str, Any], rng: list[tuple[dict, dict]], fingerprint: dict[str, Any],
                     shards: dict[str, int] | None = None, world_size: int | None = None) -> None:
    """`weights`: epoch -> a safetensors file of that epoch's model (the last epoch's and each policy's best);
    linked into the folder where the file system allows, so no weights are copied twice. `rng`: every rank's
    `capture_rng`, by rank. Sharded (FSDP): no
    `weights` or `optimizer` here, but `shards`, every rank's files (`write_shard`), of `world_size` ranks."""
    folder.mkdir(parents=True, exist_ok=True)
    for epoch, source in weights.items():
        _link_or_copy(source, folder / weights_file(epoch))
    optimizer_plain, tensors = _split_optimizer(optimizer) if optimizer is not None else (None, {})
    rng_tensors = {f"rank{rank}.{key}": value for rank, (_, by_key) in enumerate(rng) for key, value in by_key.items()}
    save_file(tensors | rng_tensors, str(folder / TENSORS_FILE))
    files = {name: (folder / name).stat().st_size for name in [TENSORS_FILE, *map(weights_file, weights)]}
    files |= shards or {}
    state = {
        "format": FORMAT, "fingerprint": fingerprint, "files": files, "shards": world_size if shards else None,
        "epoch": loop.epoch, "history": loop.history,
        "dev_by_epoch": [[epoch, [[task, lang, m] for (task, lang), m in dev.items()]]
                         for epoch, dev in loop.dev_by_epoch.items()],
        "best": {policy: {"score": score, "epoch": epoch} for policy, (score, epoch) in loop.best.items()},
        "optimizer": optimizer_plain, "scheduler": scheduler, "rng": [plain for plain, _ in rng],
    }
    text = json.dumps(state, allow_nan=True)  # before the file opens: an unserialisable value leaves no file
    (folder / STATE_FILE).write_text(text)


def read_checkpoint(folder: str | Path) -> PhaseCheckpoint:
    folder = Path(folder)
    state_file = folder / STATE_FILE
    if not state_file.is_file():
        raise CheckpointError(f"checkpoint {folder}: no {STATE_FILE} (not a phase checkpoint, or not finished)")
    try:
        state = json.loads(state_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"checkpoint {state_file}: unreadable ({err})") from None
    if state.get("format") not in (1, FORMAT):
        raise CheckpointError(f"checkpoint {state_file}: format {state.get('format')!r}, expected {FORMAT}")
    for name, size in state["files"].items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            raise CheckpointError(f"checkpoint {folder}: {name} is missing or truncated")
    tensors = load_file(str(folder / TENSORS_FILE))
    loop = LoopState(
        epoch=state["epoch"], history=state["history"],
        dev_by_epoch={epoch: {(task, lang): m for task, lang, m in dev} for epoch, dev in state["dev_by_epoch"]},
        best={policy: (b["score"], b["epoch"]) for policy, b in state["best"].items()})
    if state["format"] == 1:  # one process's generators, unprefixed
        rng = [(state["rng"], {k: v for k, v in tensors.items() if k.startswith("rng.")})]
    else:
        rng = [(plain, {k.removeprefix(f"rank{rank}."): v for k, v in tensors.items() if k.startswith(f"rank{rank}.")})
               for rank, plain in enumerate(state["rng"])]
    optimizer = _join_optimizer(state["optimizer"], tensors) if state["optimizer"] is not None else None
    return PhaseCheckpoint(folder, loop, optimizer, state["scheduler"], rng,
                           state["fingerprint"], state.get("shards"))


def latest_checkpoint_in(folder: str | Path) -> Path | None:
    """The newest finished phase checkpoint under a trial's folder (Tune's `checkpoint_000003`, Train's
    timestamped names), by the epoch it holds; None when there is none."""
    best: tuple[int, float, Path] | None = None
    for state_file in Path(folder).glob(f"**/{STATE_FILE}"):
        try:
            epoch = json.loads(state_file.read_text())["epoch"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        key = (epoch, state_file.stat().st_mtime, state_file.parent)
        best = key if best is None or key[:2] > best[:2] else best
    return best[2] if best else None


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(source, target)
