"""The pure parts of benchmarks/loop_throughput.py and benchmarks/default_search.py: padding accounting, the
length-grouped what-if's batches, and the phase seconds read back from a search folder."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_padding_counts_real_and_padded_tokens():
    lt = _load("loop_throughput")
    rows = [{"input_ids": [0] * n} for n in (2, 4, 2, 4)]
    drawn, grouped, real = lt.padding(rows, batch_size=4, seed=0, bucket=1)
    assert real == 12 and drawn == grouped == 12 / 16  # one batch: every row padded to 4
    drawn, grouped, _ = lt.padding(rows, batch_size=2, seed=0, bucket=2)
    assert grouped == 1.0 and drawn <= 1.0  # sorted within the bucket, each batch holds equal lengths
    choices = [{"input_ids": [[0] * 3, [0] * 5]}, {"input_ids": [[0] * 2, [0] * 2]}]
    drawn, _, real = lt.padding(choices, batch_size=2, seed=0, bucket=1)
    assert real == 12 and drawn == 12 / 20  # four choice sequences, each padded to 5


def test_grouped_batches_cover_every_row_once_and_sort_within_buckets():
    lt = _load("loop_throughput")
    rows = [{"input_ids": [0] * (1 + i % 7)} for i in range(50)]
    sampler = lt.GroupedBatches(len(rows), 4, torch.Generator().manual_seed(0), 3, rows)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 13
    assert sorted(i for b in batches for i in b) == list(range(50))
    for batch in batches:
        lengths = [len(rows[i]["input_ids"]) for i in batch]
        assert lengths == sorted(lengths)


def test_bare_collate_pads_as_the_formats_do():
    lt = _load("loop_throughput")
    from xgrid.formats import get_format

    rows = [{"input_ids": [0, 5, 2], "attention_mask": [1, 1, 1], "labels": [-100, 3, -100]},
            {"input_ids": [0, 2], "attention_mask": [1, 1], "labels": [-100, -100]}]
    ours, theirs = lt.bare_collate(rows, 1, tagging=True), get_format("tagging").collate(rows, 1)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_default_search_reads_every_phases_seconds(tmp_path):
    ds = _load("default_search")
    for key, seconds in (("a", 3.0), ("b", 4.5)):
        folder = tmp_path / "store" / "checkpoints" / key
        folder.mkdir(parents=True)
        (folder / "xgrid_phase.json").write_text(json.dumps({"seconds": seconds}))
    search = tmp_path / "space" / "20260101"
    search.mkdir(parents=True)
    trials = [{"cell": {"target_format": "tagging"}, "metrics": {"seconds": 2.0}},
              {"cell": {"target_format": "retrieval"}, "metrics": {"seconds": 1.0}},
              {"cell": {"target_format": "tagging"}, "metrics": {}}]
    (search / "results.json").write_text(json.dumps({"trials": trials, "best": []}))
    assert ds.phase_seconds(tmp_path) == {"stage1": [3.0, 4.5], "stage2": [2.0], "retrieval": [1.0]}
