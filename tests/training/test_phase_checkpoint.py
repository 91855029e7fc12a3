"""A phase interrupted after epoch k and resumed from its checkpoint gives exactly the result of a run that was never
interrupted (CPU, fp32: bit for bit, so the comparisons are `==`), with no Ray: the checkpoints go to a folder."""

import dataclasses
import json
import shutil

import pytest
import torch

from xgrid.training.context import FolderCheckpoints, LocalContext
from xgrid.training.phase import Hparams, PhaseRequest, run_phase
from xgrid.training.phase_checkpoint import (STATE_FILE, TENSORS_FILE, CheckpointError, latest_checkpoint_in,
                                             weights_file)


class WorkerDied(Exception):
    """Stands for the SIGKILL: raised by the reporter once an epoch's checkpoint is persisted."""


@pytest.fixture(autouse=True)
def one_thread():
    # A trial runs on one thread (limit_threads); the same here, so every run sums in the same order.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def request_for(registry, tiny_model, learning_rate=0.002, epochs=3, tasks=("mb_udpos",), **extra):
    train = tuple(registry.get(name) for name in tasks)
    return PhaseRequest(tiny_model, train, Hparams(learning_rate, epochs=epochs, max_length=48, max_train_examples=120,
                                                   max_eval_examples=40), 0, eval_task=train[0],
                        selection_policy="target_dev", **extra)


def interrupted_after(request, epoch, folder):
    """Run until `epoch`'s checkpoint is persisted, then die; returns what was reported before."""
    reports = []

    def report(metrics):
        reports.append(metrics)
        if metrics["epoch"] == epoch:
            raise WorkerDied

    with pytest.raises(WorkerDied):
        run_phase(request, LocalContext(report, checkpoints=FolderCheckpoints(folder, report)))
    return reports


def timeless(reports):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in reports]  # wall time differs, nothing else


def assert_same(resumed, straight):
    assert resumed.history == straight.history
    assert resumed.final == straight.final
    assert resumed.selected_epoch == straight.selected_epoch


# 0.002 selects the last epoch; 0.05 overshoots, so some policy's best is an earlier epoch than the checkpoint's
# (its weights must travel in the checkpoint).
@pytest.mark.parametrize("learning_rate,stop_after", [(0.002, 1), (0.05, 2)])
def test_resumed_phase_equals_a_straight_run(tmp_path, registry, tiny_model, learning_rate, stop_after):
    request = request_for(registry, tiny_model, learning_rate)
    straight_reports = []
    straight = run_phase(request, LocalContext(straight_reports.append))
    before = interrupted_after(request, stop_after, tmp_path)
    after = []
    resumed = run_phase(request, LocalContext(after.append, checkpoints=FolderCheckpoints(tmp_path, after.append)))
    assert_same(resumed, straight)
    # Reports: the epochs up to the checkpoint, then the rest from the resumed run, the last one with everything.
    assert timeless(before + after) == timeless(straight_reports)
    assert [r["epoch"] for r in after] == list(range(stop_after + 1, 4))


def test_checkpointing_does_not_change_results(tmp_path, registry, tiny_model):
    request = request_for(registry, tiny_model, 0.05)
    plain, checkpointed = [], []
    first = run_phase(request, LocalContext(plain.append))
    second = run_phase(request, LocalContext(checkpointed.append, checkpoints=FolderCheckpoints(tmp_path,
                                                                                                checkpointed.append)))
    assert_same(second, first)
    assert timeless(checkpointed) == timeless(plain)
    # Only the latest is kept: epoch 2's (the last epoch's report is the final one, with no checkpoint).
    (latest,) = [p for p in tmp_path.iterdir()]
    state = json.loads((latest / STATE_FILE).read_text())
    assert state["epoch"] == 2
    names = {p.name for p in latest.iterdir()}
    assert {STATE_FILE, TENSORS_FILE, weights_file(2)} <= names
    assert names <= {STATE_FILE, TENSORS_FILE, weights_file(1), weights_file(2)}
    assert latest_checkpoint_in(tmp_path) == latest


def test_multi_task_phase_resumes_its_schedule(tmp_path, registry, tiny_model):
    """Two training tasks: the interleaving schedule's RNG and both loaders' generators come back too."""
    request = PhaseRequest(tiny_model, (registry.get("mb_chunk"), registry.get("mb_deprel")),
                           Hparams(0.003, epochs=3, max_length=48, max_train_examples=80, max_eval_examples=30), 1)
    straight = run_phase(request)
    interrupted_after(request, 1, tmp_path)
    assert_same(run_phase(request, LocalContext(checkpoints=FolderCheckpoints(tmp_path))), straight)


def test_resume_from_on_the_request(tmp_path, registry, tiny_model):
    """A new trial (no checkpoint of its own) continues from an earlier attempt's folder named in the request, as a
    search resumed after its driver died does."""
    request = request_for(registry, tiny_model)
    straight = run_phase(request)
    interrupted_after(request, 2, tmp_path / "first")
    earlier = latest_checkpoint_in(tmp_path / "first")
    reports = []
    resumed = run_phase(dataclasses.replace(request, resume_from=str(earlier)),
                        LocalContext(reports.append))
    assert_same(resumed, straight)
    assert [r["epoch"] for r in reports] == [3]


def test_a_checkpoint_of_another_trial_or_a_truncated_one_is_refused(tmp_path, registry, tiny_model):
    import dataclasses

    request = request_for(registry, tiny_model)
    interrupted_after(request, 1, tmp_path)
    folder = latest_checkpoint_in(tmp_path)
    other = dataclasses.replace(request, hparams=dataclasses.replace(request.hparams, learning_rate=0.003),
                                resume_from=str(folder))
    with pytest.raises(CheckpointError, match="another trial.*hparams"):
        run_phase(other)
    weights = folder / weights_file(1)
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated"):
        run_phase(dataclasses.replace(request, resume_from=str(folder)))
    with pytest.raises(CheckpointError, match="no xgrid_checkpoint.json"):
        run_phase(dataclasses.replace(request, resume_from=str(tmp_path)))


def test_every_rank_gets_its_own_generators_back_and_a_layout_mismatch_is_refused(tmp_path):
    """Ranks draw differently (each pads its batches to its own lengths): the checkpoint keeps each rank's generators
    and gives each its own; a checkpoint of another number of ranks, or of another sharding, is refused by name."""
    import random

    from xgrid.training.phase_checkpoint import LoopState, capture_rng, read_checkpoint, write_checkpoint

    by_rank = []
    for rank in range(2):
        torch.manual_seed(rank)
        generator = torch.Generator().manual_seed(10 + rank)
        by_rank.append(capture_rng(random.Random(rank), {"mb_udpos.loader": generator}))
    write_checkpoint(tmp_path / "ddp", LoopState(1, [], {}, {}), {}, {"state": {}, "param_groups": []}, {}, by_rank,
                     {"seed": 0})
    saved = read_checkpoint(tmp_path / "ddp")
    for rank in range(2):
        plain, tensors = saved.rng_of(rank, 2)
        assert plain == by_rank[rank][0]
        assert all(torch.equal(tensors[k], v) for k, v in by_rank[rank][1].items()) and tensors.keys() == by_rank[rank][1].keys()
    assert not torch.equal(saved.rng_of(0, 2)[1]["rng.torch"], saved.rng_of(1, 2)[1]["rng.torch"])
    with pytest.raises(CheckpointError, match="written by 2 rank.*has 4"):
        saved.rng_of(0, 4)
    saved.check_sharding(False, 2)
    with pytest.raises(CheckpointError, match="holds full weights; this trial keeps the FSDP shards of 2 ranks"):
        saved.check_sharding(True, 2)
    # Sharded: each rank's part (its weights shards, its optimizer state) in its own folder, merged as Train merges.
    from xgrid.training.phase_checkpoint import write_shard

    merged, parts = tmp_path / "fsdp", {}
    for rank in range(2):
        shard = tmp_path / f"weights-rank{rank}"
        shard.mkdir()
        (shard / "__0_0.distcp").write_bytes(b"w" * (rank + 5))
        save_optimizer = lambda path: path.mkdir() or (path / "__0_0.distcp").write_bytes(b"o" * 3)
        parts |= write_shard(merged, rank, {1: shard}, save_optimizer)
    assert sorted(parts) == ["optimizer.rank0/__0_0.distcp", "optimizer.rank1/__0_0.distcp",
                             "weights-epoch1.rank0/__0_0.distcp", "weights-epoch1.rank1/__0_0.distcp"]
    write_checkpoint(merged, LoopState(1, [], {}, {}), {}, None, {}, by_rank, {"seed": 0}, parts, 2)
    sharded = read_checkpoint(merged)
    assert sharded.optimizer is None and sharded.weights(1, 1) == merged / "weights-epoch1.rank1"
    sharded.check_sharding(True, 2)
    with pytest.raises(CheckpointError, match="holds the FSDP shards of 2 ranks; this trial keeps the FSDP shards of 4"):
        sharded.check_sharding(True, 4)
    with pytest.raises(CheckpointError, match="holds the FSDP shards of 2 ranks; this trial keeps full weights"):
        sharded.check_sharding(False, 2)
    # A rank's part lost in the merge (an upload that never landed) makes the checkpoint incomplete.
    shutil.rmtree(merged / "weights-epoch1.rank1")
    with pytest.raises(CheckpointError, match="weights-epoch1.rank1/__0_0.distcp is missing"):
        read_checkpoint(merged)
