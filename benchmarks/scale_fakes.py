"""Benchmark-only stand-ins for the phases, shared by benchmarks/compare_scale.py and benchmarks/driver_scale.py.

`fake_result(request)` is what `run_phase` would return for a request, without a model: the same metric names
(every metric the target's format computes, per language, `avg` / `avg_xling`, both policies), the same number of
epochs and per-epoch records, scores drawn from the request's seed, tasks and learning rate (so cells differ and
trials of a cell rank). `fake_run_phase(request, ctx)` reports it through the context as a real phase does (a
checkpoint folder with every epoch but the last when the context checkpoints, the full final report last) and, for
a stage-1 request, writes a stub encoder into its output folder.

`install()` puts `fake_run_phase` in place of the real phase where the search's processes call it: the inline
trial (`xgrid.search.trial.run_phase`) and the stage-1 writer (`xgrid.running.stage1_writer.run_phase`). Ray's
workers run it from `worker_process_setup_hook` (`RAY_INIT` below), with this folder on their PYTHONPATH
(`benchmark_env()`); nothing of this is in the package.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# What each format's evaluation returns per language (xgrid/metrics/*): a real run logs every one of them.
FORMAT_METRICS = {"tagging": ("f1", "precision", "recall", "accuracy"), "classification": ("accuracy",),
                  "multiple_choice": ("accuracy",), "span_qa": ("exact_match", "f1", "em_f1"), "retrieval": ("accuracy",)}


def _noise(*parts: Any) -> float:
    """A number in [0, 1), the same for the same parts in every process."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2 ** 64


LANGUAGE_OFFSET = {"en": 15.0}


def _score(tasks, seed, lr, language, *rest) -> float:
    """A score well above every task's chance: a task effect (fixed per intermediate task), a seed effect, a
    little of the learning rate and of the language, and noise."""
    task = 6 * _noise("task", tuple(tasks)) if tasks else 0.0
    return (60.0 + task + 1.5 * _noise("seed", seed, tuple(tasks)) + 2 * _noise("lr", lr)
            + LANGUAGE_OFFSET.get(language, -3 * _noise("lang", language)) + 0.5 * _noise(tasks, seed, lr, language, *rest))


def fake_result(request):
    """The PhaseResult `run_phase` would return for `request`, with made-up scores."""
    from xgrid.tracking_schema import ENGLISH_DEV, POLICIES, TARGET_DEV, TRAIN_LOSS, EPOCH, select_metric
    from xgrid.training.phase import PhaseResult

    # A stage-2 request trains on the target's task: its encoder (the cell's stage-1 checkpoint) tells the cells apart.
    tasks = [t.name for t in request.train_tasks] + ([request.encoder_source] if request.eval_task else [])
    lr = request.hparams.learning_rate
    target = request.eval_task
    if target is not None:
        metric = target.metric
        languages = list(request.eval_languages or target.languages)
        names = FORMAT_METRICS.get(target.format, (metric,))
        dev_names = lambda epoch: {f"dev.{metric}.{lang}": _score(tasks, request.seed, lr, lang, epoch)
                                   for lang in languages}
    else:
        first = request.train_tasks[0]
        metric = first.metric if len(tasks) == 1 else f"{first.name}.{first.metric}"
        languages = ["en"]
        names = {t.name: FORMAT_METRICS.get(t.format, (t.metric,)) for t in request.train_tasks}
        dev_names = lambda epoch: {f"dev.{t.name}.{t.metric}": _score((t.name,), request.seed, lr, "en", epoch)
                                   for t in request.train_tasks}
    history, best = [], {}
    for epoch in range(1, request.hparams.epochs + 1):
        record = {EPOCH: epoch, TRAIN_LOSS: 2.0 / epoch * (0.5 + _noise(tasks, request.seed, lr, epoch)),
                  **dev_names(epoch)}
        devs = list(record.values())[2:]
        record[select_metric(ENGLISH_DEV)] = devs[0] if target is None else record[f"dev.{metric}.en"]
        if target is not None:
            record[select_metric(TARGET_DEV)] = sum(devs) / len(devs)
        for policy in POLICIES:
            score = record.get(select_metric(policy))
            if score is not None and (policy not in best or score > best[policy][0]):
                best[policy] = (score, epoch)
        history.append(record)

    def scores(policy):
        if target is None:
            return {"en": {n: _score(tasks, request.seed, lr, "en", n) for ns in names.values() for n in ns}}
        return {lang: {n: _score(tasks, request.seed, lr, lang, policy, n) for n in names} for lang in languages}

    final = {policy: scores(policy) for policy in best}
    result = PhaseResult(metric, history, final, {p: e for p, (_, e) in best.items()}, request.selection_policy,
                         0.01)
    return result, {f"best.{p}": s for p, (s, _) in best.items()}


def fake_run_phase(request, ctx=None):
    """Reports like `run_phase` (xgrid.training.phase._Trainer.run), trains nothing."""
    from xgrid.tracking_schema import SECONDS

    started = time.perf_counter()
    result, selected = fake_result(request)
    last = len(result.history)
    for record in result.history[:-1]:
        if ctx is None:
            continue
        if getattr(ctx, "checkpointing", False):
            folder = Path(tempfile.mkdtemp(prefix="xgrid-fake-checkpoint-"))
            try:
                (folder / "state.json").write_text(json.dumps({"epoch": record["epoch"], "of": last}))
                ctx.report(record, checkpoint_dir=str(folder))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        else:
            ctx.report(record)
    if request.output_dir:  # stage 1: a stub "encoder" for the store to commit
        Path(request.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(request.output_dir) / "config.json").write_text(json.dumps({"fake": True, "seed": request.seed}))
    result.seconds = time.perf_counter() - started
    if ctx is not None:
        ctx.report(result.history[-1] | selected | result.flat_metrics() | {SECONDS: result.seconds})
    return result


def install() -> None:
    """In this process: the phases are fakes (the inline trial's and the stage-1 writer's)."""
    import xgrid.running.stage1_writer as stage1_writer
    import xgrid.search.trial as trial

    trial.run_phase = fake_run_phase
    stage1_writer.run_phase = fake_run_phase


# ray.init kwargs that make every Ray worker call install() before it runs anything.
RAY_INIT = {"runtime_env": {"worker_process_setup_hook": "scale_fakes.install"}}


def benchmark_env() -> None:
    """Ray workers inherit the driver's environment: put this folder on their PYTHONPATH."""
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)


def peak_rss_mib(ru_maxrss_kib: int) -> float:
    return ru_maxrss_kib / 1024
