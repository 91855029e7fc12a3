"""Serve the hub fixtures (tests/fixtures/hub) through `datasets.load_dataset`, the one call that touches the hub.

`install(monkeypatch)` replaces `datasets.load_dataset`: a hub id returns a Dataset built from the fixture rows
with the hub's Features, as a cache hit would; packaged builders ("json", "parquet", ...) and local folders (a
local copy in the hub layout) still run for real. A dataset or split the fixtures lack fails the way `datasets`
does (ConnectionError / "Unknown split"). Every hub call is recorded with whether the hub was switched off at
the time. `uninstall(monkeypatch)` puts the real `datasets.load_dataset` back (a node without the hub).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hub"
LOCAL = {"ccg": str(FIXTURES / "local" / "ccgbank"), "mewsli_x": str(FIXTURES / "local" / "mewsli_x")}
PACKAGED = {"json", "parquet", "csv", "text", "arrow"}
REAL_LOAD_DATASET = datasets.load_dataset


def fixture_features(path: str, config: str) -> datasets.Features:
    folder = FIXTURES / path.replace("/", "__")
    file = folder / config / "features.json"
    if not file.is_file():
        file = folder / "features.json"
    return datasets.Features.from_dict(json.loads(file.read_text()))


def fixture_dataset(path: str, config: str, split: str) -> datasets.Dataset:
    folder = FIXTURES / path.replace("/", "__")
    if not folder.is_dir():
        raise ConnectionError(f"Couldn't reach {path!r} on the Hub (no fixture)")
    if not (folder / config).is_dir():
        raise ValueError(f"BuilderConfig '{config}' not found. Available: {sorted(p.name for p in folder.iterdir())}")
    file = folder / config / f"{split}.jsonl"
    if not file.is_file():
        splits = sorted(p.stem for p in (folder / config).glob("*.jsonl"))
        raise ValueError(f'Unknown split "{split}". Should be one of {splits}.')
    rows = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    return datasets.Dataset.from_list(rows, features=fixture_features(path, config))


@dataclass
class FakeHub:
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, path, name=None, *args, split=None, revision=None, data_files=None, **kwargs):
        if path in PACKAGED or Path(path).is_dir():
            return REAL_LOAD_DATASET(path, name, *args, split=split, data_files=data_files, **kwargs)
        config = name or (next(iter(data_files.values())).split("/")[0] if data_files else "default")
        self.calls.append({"path": path, "config": config, "split": split, "revision": revision,
                           "offline": bool(datasets.config.HF_HUB_OFFLINE)})
        return fixture_dataset(path, config, split)

    def paths(self) -> set[str]:
        return {c["path"] for c in self.calls}


def install(monkeypatch) -> FakeHub:
    fake = FakeHub()
    monkeypatch.setattr(datasets, "load_dataset", fake)
    return fake


def uninstall(monkeypatch) -> None:
    monkeypatch.setattr(datasets, "load_dataset", REAL_LOAD_DATASET)


def refuse_connections(monkeypatch) -> list:
    """No network at all, as on a node without internet: every attempt to resolve a host or open a connection is
    refused and recorded. Returns the record; the test asserts it empty."""
    import socket

    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise OSError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts
