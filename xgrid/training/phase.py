"""One phase of X-STILTs training as a plain function: fine-tune an encoder on a task (or a multi-task group),
select the checkpoint by a declared policy, evaluate on every language, optionally save the encoder.

Stage 1 (intermediate) and stage 2 (target) are both this function; they differ only in their request.
A retrieval target (a scored format) is scored from the encoder as it is when the request has no train tasks
(XTREME); with train tasks (XTREME-R: Tatoeba and LAReQA after SQuAD) the encoder is first fine-tuned on them,
the epoch is selected on their English dev, and the retrieval target is scored with that epoch's encoder.

A phase whose context keeps checkpoints (`ctx.checkpointing`) writes one at the end of every epoch but the last
(whose report is the final one) and, on a retry or with `request.resume_from`, continues from the next epoch with
the same results as a run that was never interrupted (`phase_checkpoint`).
"""

from __future__ import annotations

import math
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xgrid.data.sources import LoadContext
from xgrid.formats import RetrievalSettings, get_format
from xgrid.models.loading import load_encoder, load_tokenizer
from xgrid.tasks.spec import TaskSpec
from xgrid.tracking_schema import (ENGLISH_DEV, EPOCH, POLICIES, SECONDS, TARGET_DEV, TRAIN_LOSS, best_metric,
                                   final_metric_name, intermediate_dev_metric, select_metric, target_dev_metric)
from xgrid.training.context import LocalContext, TrainContext, unwrap
from xgrid.training.data import Split, featurize, load_split
from xgrid.training.phase_checkpoint import (CheckpointError, LoopState, capture_rng, read_checkpoint, restore_rng,
                                             weights_file, write_checkpoint, write_shard)
from xgrid.training.shards import load_optimizer_shards, save_optimizer_shards

SUMMARY_FILE = "xgrid_phase.json"


@dataclass(frozen=True)
class Hparams:
    learning_rate: float
    epochs: int = 3
    batch_size: int = 32
    grad_accum: int = 1
    max_length: int = 128
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    precision: str = "fp32"

    @classmethod
    def from_settings(cls, settings: Any, learning_rate: float, precision: str = "fp32") -> "Hparams":
        names = [f for f in cls.__dataclass_fields__ if f not in ("learning_rate", "precision")]
        return cls(learning_rate=learning_rate, precision=precision, **{n: getattr(settings, n) for n in names})


@dataclass(frozen=True)
class PhaseRequest:
    # A folder written by save_pretrained, or a hub id. (A search's requests name store checkpoints,
    # `xgrid-store:...`, which the process that runs the phase resolves first: `xgrid.running.encoders`.)
    encoder_source: str
    train_tasks: tuple[TaskSpec, ...]  # one task, or several for multi-task training
    hparams: Hparams
    seed: int
    # The target being evaluated (its English training data may be another task's: XNLI trains on MNLI).
    # None for an intermediate phase, which is scored on its own tasks' English dev sets.
    eval_task: TaskSpec | None = None
    selection_policy: str = ENGLISH_DEV
    eval_languages: tuple[str, ...] | None = None  # default: all of the eval task's languages
    load: LoadContext = field(default_factory=LoadContext)
    output_dir: str | None = None  # save the selected encoder here (stage 1)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    # A checkpoint folder of an earlier attempt of this same trial (e.g. from a search that is resumed after its
    # driver died): the phase continues from it when its context has no checkpoint of its own.
    resume_from: str | None = None

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must have been written for to be resumed by this request."""
        # Not the encoder's path: a store may fetch the same stage-1 checkpoint into another folder next time.
        return {"train_tasks": [t.name for t in self.train_tasks],
                "eval_task": self.eval_task.name if self.eval_task else None, "seed": self.seed,
                "hparams": asdict(self.hparams), "selection_policy": self.selection_policy,
                "eval_languages": list(self.eval_languages) if self.eval_languages else None}

    def __post_init__(self) -> None:
        if self.selection_policy not in POLICIES:
            raise ValueError(f"selection_policy {self.selection_policy!r} is not one of {POLICIES}")
        if not self.train_tasks and self.eval_task is None:
            raise ValueError("a phase needs train_tasks or an eval_task")
        scored = [t.name for t in self.train_tasks if not get_format(t.format).trains]
        if scored:
            raise ValueError(f"train task(s) {scored} have a scored (retrieval) format: there is nothing to train on")


@dataclass
class PhaseResult:
    metric: str  # primary metric of the evaluated task(s)
    history: list[dict[str, float]]  # per epoch: train loss and dev scores
    final: dict[str, dict[str, dict[str, float]]]  # policy -> language -> metrics (test split; dev for intermediates)
    selected_epoch: dict[str, int]  # policy -> epoch (0 = untrained: a retrieval target scored as it is)
    policy: str
    seconds: float
    output_dir: str | None = None

    def summary(self) -> dict[str, Any]:
        """What a stage-1 checkpoint keeps of its training (SUMMARY_FILE beside the weights)."""
        return {"metric": self.metric, "history": self.history, "final": self.final,
                "selected_epoch": self.selected_epoch, "policy": self.policy, SECONDS: self.seconds}

    def scores(self, policy: str | None = None) -> dict[str, float]:
        """The primary metric per language under a policy (the declared one by default)."""
        return {lang: m[self.metric] for lang, m in self.final[policy or self.policy].items()}

    def flat_metrics(self) -> dict[str, float]:
        """Final metrics as flat names: `<metric>.<lang>`, `<metric>.avg` (all languages), `<metric>.avg_xling`
        (without English); the other policy's copies are prefixed with its name."""
        flat: dict[str, float] = {}
        for policy, by_language in self.final.items():
            # The same naming `xgrid compare` reads back (one definition, in tracking_schema).
            named = lambda metric, language: final_metric_name(metric, language, policy, self.policy)
            for language, metrics in by_language.items():
                flat.update({named(name, language): value for name, value in metrics.items()})
            for name in next(iter(by_language.values()), {}):
                values = {lang: m[name] for lang, m in by_language.items()}
                flat[named(name, "avg")] = float(np.mean(list(values.values())))
                others = [v for lang, v in values.items() if lang != "en"]
                if others:
                    flat[named(name, "avg_xling")] = float(np.mean(others))
        return flat


class PhaseModel(nn.Module):
    """The encoder with one head per training task; `forward(task, batch)` routes through that task's format."""

    def __init__(self, encoder: nn.Module, heads: dict[str, nn.Module], formats: dict[str, Any]):
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict(heads)
        self.formats = formats

    def forward(self, task: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.formats[task].forward(self.encoder, self.heads[task], batch)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_phase(request: PhaseRequest, ctx: TrainContext | None = None) -> PhaseResult:
    ctx = ctx or LocalContext()
    started = time.perf_counter()
    seed_everything(request.seed)
    tokenizer = load_tokenizer(request.encoder_source)
    if is_retrieval_target(request) and not request.train_tasks:
        return _score_retrieval(request, load_encoder(request.encoder_source), tokenizer, ctx, started)
    # Under FSDP only rank 0 reads the weights; the others build the shape and receive their shards (`ctx.wrap`).
    encoder = load_encoder(request.encoder_source, empty=not getattr(ctx, "loads_weights", True))
    return _Trainer(request, encoder, tokenizer, ctx).run(started)


def is_retrieval_target(request: PhaseRequest) -> bool:
    """The request's target is scored from encoder embeddings (a ScoredFormat), not through a trained head."""
    return request.eval_task is not None and not get_format(request.eval_task.format).trains


def retrieval_scores(request: PhaseRequest, encoder: nn.Module, tokenizer: Any,
                     device: torch.device) -> dict[str, dict[str, float]]:
    """language -> metrics of the retrieval target's test split, embedded by `encoder` as it is."""
    task = request.eval_task
    fmt = get_format(task.format)
    settings = RetrievalSettings(request.retrieval.layer, request.retrieval.pooling, request.hparams.batch_size,
                                 request.hparams.max_length)
    by_language = {}
    for language in request.eval_languages or task.languages:
        examples = load_split(task, language, "test", request.load, request.hparams.max_eval_examples)
        if examples is not None:
            by_language[language] = fmt.evaluate_encoder(encoder, tokenizer, examples, task, language, settings,
                                                         device, load=request.load)
    return by_language


def _score_retrieval(request, encoder, tokenizer, ctx, started) -> PhaseResult:
    task = request.eval_task
    by_language = retrieval_scores(request, encoder.to(ctx.device), tokenizer, ctx.device)
    # No training, so nothing to select: both policies see the same encoder.
    final = {policy: by_language for policy in POLICIES}
    result = PhaseResult(task.metric, [], final, {p: 0 for p in POLICIES}, request.selection_policy,
                         time.perf_counter() - started)
    ctx.report({EPOCH: 0, **result.flat_metrics()})
    return result


class _Trainer:
    def __init__(self, request: PhaseRequest, encoder: nn.Module, tokenizer: Any, ctx: TrainContext):
        self.req, self.tokenizer, self.ctx = request, tokenizer, ctx
        hp = request.hparams
        self.train: dict[str, Split] = {}
        for task in request.train_tasks:
            examples = load_split(task, "en", "train", request.load, hp.max_train_examples)
            if examples is None:
                raise ValueError(f"task {task.name!r} has no English training data")
            self.train[task.name] = featurize(task, examples, tokenizer, hp.max_length, training=True)
        formats = {t.name: get_format(t.format) for t in request.train_tasks}
        hidden = encoder.config.hidden_size if hasattr(encoder.config, "hidden_size") else encoder.config.d_model
        # Seeded before the heads exist, so a fresh head is the same for the same seed.
        torch.manual_seed(request.seed)
        heads = {t.name: formats[t.name].build_head(hidden, formats[t.name].num_outputs(t, self.train[t.name].examples))
                 for t in request.train_tasks}
        self.model = ctx.wrap(PhaseModel(encoder, heads, formats))
        # XTREME-R: the target is scored from embeddings after fine-tuning on the train tasks, through no head.
        self.retrieval_target = is_retrieval_target(request)
        self.eval_sets = self._eval_sets()
        self._tests: dict[str, Split] | None = None  # test splits, featurized on first use

    # --- what is evaluated -------------------------------------------------------------------------------
    def _eval_sets(self) -> dict[tuple[str, str], tuple[TaskSpec, str, Split]]:
        """(task name, language) -> (task, head to use, dev split). A target is scored through the head of
        the task it trains on; an intermediate phase, and a retrieval target's fine-tuning (a retrieval task has
        no head to score a dev split through), score each train task on English dev."""
        req, hp = self.req, self.req.hparams
        pairs = ([(req.eval_task, req.train_tasks[0].name, lang) for lang in (req.eval_languages or req.eval_task.languages)]
                 if self._dev_on_target else [(t, t.name, "en") for t in req.train_tasks])
        sets = {}
        for task, head, language in pairs:
            examples = load_split(task, language, "dev", req.load, hp.max_eval_examples)
            if examples is not None:
                sets[(task.name, language)] = (task, head, featurize(task, examples, self.tokenizer, hp.max_length, False))
        if not any(lang == "en" for _, lang in sets):
            raise ValueError("no English dev split to select a checkpoint on: "
                             f"{[t.name for t in ([req.eval_task] if self._dev_on_target else req.train_tasks)]}")
        return sets

    @property
    def _dev_on_target(self) -> bool:
        """Epochs are selected on the target's own dev splits (a trained target), else on the train tasks'."""
        return self.req.eval_task is not None and not self.retrieval_target

    @property
    def metric(self) -> str:
        tasks = [self.req.eval_task] if self.req.eval_task else self.req.train_tasks
        # A multi-task intermediate phase reports `<task>.<metric>` names; its first task's is the headline.
        return tasks[0].metric if len(tasks) == 1 else f"{tasks[0].name}.{tasks[0].metric}"

    # --- training --------------------------------------------------------------------------------------
    def run(self, started: float) -> PhaseResult:
        req, hp, ctx = self.req, self.req.hparams, self.ctx
        loaders = {name: ctx.loader(split.rows, hp.batch_size, True, self._collate(name), req.seed)
                   for name, split in self.train.items()}
        steps_per_epoch = sum(len(loader) for loader in loaders.values())
        total_steps = math.ceil(steps_per_epoch / hp.grad_accum) * hp.epochs
        optimizer, scheduler = _optimizer(self.model, hp, total_steps)
        schedule_rng = random.Random(req.seed)
        generators = _generators(loaders)
        loop = LoopState(0, [], {}, {})
        weights = _EpochWeights(ctx)
        try:
            source = ctx.latest_checkpoint() or req.resume_from
            if source:
                self._restore(source, loop, weights, optimizer, scheduler, schedule_rng, generators)
            for epoch in range(loop.epoch + 1, hp.epochs + 1):
                loss = self._train_epoch(loaders, optimizer, scheduler, schedule_rng, epoch)
                dev = loop.dev_by_epoch[epoch] = self._evaluate_dev()
                record = {EPOCH: epoch, TRAIN_LOSS: loss, **self._dev_record(dev)}
                for policy, score in self._selection_scores(dev).items():
                    record[select_metric(policy)] = score
                    if policy not in loop.best or score > loop.best[policy][0]:
                        loop.best[policy] = (score, epoch)
                loop.history.append(record)
                loop.epoch = epoch
                last = epoch == hp.epochs
                checkpoint = ctx.checkpointing and not last
                needed = {e for _, e in loop.best.values()} | ({epoch} if checkpoint else set())
                # The selected weights live on disk, not as copies in memory: every rank keeps its own files (all
                # of the weights, or under FSDP its shards), since every rank scores the test split.
                if epoch in needed:
                    weights.put(epoch, self.model)
                weights.keep(needed)
                if checkpoint:
                    self._checkpoint(record, loop, weights, optimizer, scheduler, schedule_rng, generators)
                elif not last:
                    ctx.report(record)
            final, selected = self._final(loop.best, loop.dev_by_epoch, weights)
            result = PhaseResult(self.metric, loop.history, final, selected, req.selection_policy,
                                 time.perf_counter() - started)
            # Only rank 0 writes the encoder (the stage-1 writer gives only it a folder), but every rank takes part
            # in gathering the weights (a collective under FSDP), so the ranks first agree whether there is one.
            if any(ctx.all_gather(req.output_dir is not None)):
                weights.restore(loop.best[ENGLISH_DEV][1], self.model)
                state = ctx.full_state_dict(self.model)
                if req.output_dir:
                    result.output_dir = self._save(state)
        finally:
            weights.close()
        # The last report carries everything: the selected scores (how a search ranks trials of a cell) and the
        # zero-shot results of every language under both policies.
        selected_scores = {best_metric(policy): score for policy, (score, _) in loop.best.items()}
        ctx.report(loop.history[-1] | selected_scores | result.flat_metrics() | {SECONDS: result.seconds})
        return result

    # --- checkpoints -----------------------------------------------------------------------------------
    def _checkpoint(self, record, loop, weights, optimizer, scheduler, schedule_rng, generators) -> None:
        """The end of an epoch, as a folder the context persists with the epoch's report: rank 0 writes it (DDP
        ranks hold the same state); under FSDP every rank writes its own shards of it, and rank 0 the record."""
        ctx = self.ctx
        rng = ctx.all_gather(capture_rng(schedule_rng, generators))  # every rank's own: they draw differently
        if not ctx.sharded and ctx.rank != 0:
            ctx.report(record)
            return
        folder = Path(tempfile.mkdtemp(prefix="xgrid-checkpoint-"))
        try:
            if ctx.sharded:
                mine = write_shard(folder, ctx.rank, weights.files,
                                   lambda path: save_optimizer_shards(self.model, optimizer, path))
                shards = {name: size for part in ctx.all_gather(mine) for name, size in part.items()}
                files, optimizer_state = {}, None
            else:
                shards, files, optimizer_state = None, weights.files, optimizer.state_dict()
            if ctx.rank == 0:
                write_checkpoint(folder, loop, files, optimizer_state, scheduler.state_dict(), rng,
                                 self.req.fingerprint(), shards, ctx.world_size)
            ctx.report(record, checkpoint_dir=str(folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _restore(self, source, loop, weights, optimizer, scheduler, schedule_rng, generators) -> None:
        """Everything `_checkpoint` wrote, back in place: the loop goes on with the epoch after the saved one."""
        saved = read_checkpoint(source)
        if saved.fingerprint != self.req.fingerprint():
            differ = sorted(k for k in self.req.fingerprint() if saved.fingerprint.get(k) != self.req.fingerprint()[k])
            raise CheckpointError(f"checkpoint {source} was written for another trial (it differs in {', '.join(differ)})")
        ctx = self.ctx
        saved.check_sharding(ctx.sharded, ctx.world_size)
        rank = ctx.rank if ctx.sharded else None  # a rank reads its own shards, else everyone the full weights
        loop.epoch, loop.history, loop.dev_by_epoch, loop.best = (saved.loop.epoch, saved.loop.history,
                                                                  saved.loop.dev_by_epoch, saved.loop.best)
        for epoch in {e for _, e in loop.best.values()} | {loop.epoch}:
            weights.adopt(epoch, saved.weights(epoch, rank))
        weights.restore(loop.epoch, self.model)
        if ctx.sharded:
            load_optimizer_shards(self.model, optimizer, saved.optimizer_part(ctx.rank))
        else:
            optimizer.load_state_dict(saved.optimizer)
        scheduler.load_state_dict(saved.scheduler)
        restore_rng(saved.rng_of(ctx.rank, ctx.world_size), schedule_rng, generators)

    def _collate(self, task_name: str):
        fmt = self.model_formats[task_name]
        pad_id = self.tokenizer.pad_token_id
        return lambda rows: fmt.collate(rows, pad_id)

    @property
    def model_formats(self) -> dict[str, Any]:
        return unwrap(self.model).formats

    def _train_epoch(self, loaders, optimizer, scheduler, schedule_rng, epoch) -> float:
        hp = self.req.hparams
        self.model.train()
        for loader in loaders.values():
            self.ctx.set_epoch(loader, epoch)
        # Multi-task: batches of all tasks interleaved in proportion to their sizes (examples-proportional
        # mixing); every rank draws the same order from the same seed, so DDP steps stay in lock-step.
        order = [name for name, loader in loaders.items() for _ in range(len(loader))]
        schedule_rng.shuffle(order)
        iterators = {name: iter(loader) for name, loader in loaders.items()}
        total, count = 0.0, 0
        for step, name in enumerate(order, start=1):
            batch = {k: v.to(self.ctx.device) for k, v in next(iterators[name]).items()}
            with _autocast(hp.precision, self.ctx.device):
                loss = self.model_formats[name].loss(self.model(name, batch), batch)
            (loss / hp.grad_accum).backward()
            total, count = total + float(loss.detach()), count + 1
            if step % hp.grad_accum == 0 or step == len(order):
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), hp.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
        return total / max(count, 1)

    # --- evaluation ------------------------------------------------------------------------------------
    @torch.no_grad()
    def _score(self, task: TaskSpec, head: str, split: Split, language: str) -> dict[str, float]:
        # Every rank scores the whole split (FSDP's forward needs all ranks); only rank 0's report is kept.
        model = unwrap(self.model)
        model.eval()
        collate = self._collate(head)
        outputs, size = [], self.req.hparams.batch_size * 2  # no activations kept: larger batches fit
        for start in range(0, len(split.rows), size):
            batch = {k: v.to(self.ctx.device) for k, v in collate(split.rows[start: start + size]).items()}
            with _autocast(self.req.hparams.precision, self.ctx.device):
                outputs.append(model(head, batch).float().cpu().numpy())
        return get_format(task.format).score(outputs, split.features, split.examples, task, language) if outputs else {}

    def _evaluate_dev(self) -> dict[tuple[str, str], dict[str, float]]:
        return {key: self._score(task, head, split, key[1]) for key, (task, head, split) in self.eval_sets.items()}

    def _dev_record(self, dev: dict[tuple[str, str], dict[str, float]]) -> dict[str, float]:
        """Flat names for reports: `dev.<metric>.<lang>` for a target, `dev.<task>.<metric>` for intermediates and
        for the fine-tuning task of a retrieval target (its dev scores are that task's, not the target's)."""
        if self._dev_on_target:
            return {target_dev_metric(self.metric, lang): m[self.metric] for (_, lang), m in dev.items()}
        metric_of = lambda name, lang: self.eval_sets[(name, lang)][0].metric
        return {intermediate_dev_metric(name, metric_of(name, lang)): m[metric_of(name, lang)]
                for (name, lang), m in dev.items()}

    def _selection_scores(self, dev: dict[tuple[str, str], dict[str, float]]) -> dict[str, float]:
        primary = {key: m[self.eval_sets[key][0].metric] for key, m in dev.items()}
        scores = {ENGLISH_DEV: float(np.mean([v for (_, lang), v in primary.items() if lang == "en"]))}
        if self.retrieval_target:
            # A retrieval target has no dev split to select on in any language, so under target_dev too the epoch
            # is selected on the fine-tuning task's English dev: both policies report it (the scheduler and the
            # searcher rank the declared one's `select.<policy>`), and both select the same epoch.
            scores[TARGET_DEV] = scores[ENGLISH_DEV]
        elif self.req.eval_task is not None and len(primary) > 1:
            scores[TARGET_DEV] = float(np.mean(list(primary.values())))
        return scores

    def _final(self, best, dev_by_epoch, weights: "_EpochWeights") -> tuple[dict, dict[str, int]]:
        """Reload each policy's selected weights and score the test split of every language, once per distinct
        epoch. An intermediate phase has no test split: its final numbers are the selected epoch's dev scores."""
        final, selected, cache = {}, {}, {}
        for policy, (_, epoch) in best.items():
            selected[policy] = epoch
            if epoch not in cache:
                if self.req.eval_task is None:
                    cache[epoch] = {"en": self._intermediate_scores(dev_by_epoch[epoch])}
                else:
                    weights.restore(epoch, self.model)
                    # A retrieval target is scored from a full copy of the encoder (gathered on rank 0).
                    cache[epoch] = (self._score_retrieval_target(self.ctx.full_state_dict(self.model))
                                    if self.retrieval_target else self._score_test())
            final[policy] = cache[epoch]
        return final, selected

    def _score_retrieval_target(self, state: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
        """The retrieval target scored as `_score_retrieval` scores it, by the encoder of a selected epoch.

        The encoder is a fresh, unwrapped copy holding the selected weights: the retrieval protocols call the
        encoder itself, which under FSDP would skip the wrapped model's gathering of its sharded parameters."""
        encoder_state = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
        if not encoder_state:
            # Under FSDP only rank 0 receives the gathered weights; only rank 0's report is kept, so the other ranks report no scores rather than the untrained encoder's.
            return {}
        encoder = load_encoder(self.req.encoder_source)
        encoder.load_state_dict(encoder_state)
        return retrieval_scores(self.req, encoder.to(self.ctx.device), self.tokenizer, self.ctx.device)

    def _intermediate_scores(self, dev: dict[tuple[str, str], dict[str, float]]) -> dict[str, float]:
        if len(dev) == 1:
            return dict(next(iter(dev.values())))
        return {f"{name}.{k}": v for (name, _), metrics in dev.items() for k, v in metrics.items()}

    def _score_test(self) -> dict[str, dict[str, float]]:
        req = self.req
        return {language: self._score(req.eval_task, req.train_tasks[0].name, split, language)
                for language, split in self._test_splits().items()}

    def _test_splits(self) -> dict[str, Split]:
        """Loaded and featurized once, although two policies that select different epochs score them twice."""
        if self._tests is None:
            req, hp = self.req, self.req.hparams
            self._tests = {}
            for language in req.eval_languages or req.eval_task.languages:
                examples = load_split(req.eval_task, language, "test", req.load, hp.max_eval_examples)
                if examples is not None:
                    self._tests[language] = featurize(req.eval_task, examples, self.tokenizer, hp.max_length, False)
        return self._tests

    def _save(self, state: dict[str, torch.Tensor]) -> str | None:
        out = Path(self.req.output_dir)
        if self.ctx.rank == 0:
            encoder = unwrap(self.model).encoder
            # Stored in the training dtype: a bf16 run keeps bf16 weights (half the store: 21 GB, not 43, per
            # XXL checkpoint), which the next stage loads back into fp32 master weights.
            dtype = torch.bfloat16 if self.req.hparams.precision == "bf16" else None
            encoder_state = {k.removeprefix("encoder."): (v.to(dtype) if dtype and v.is_floating_point() else v)
                             for k, v in state.items() if k.startswith("encoder.")}
            out.mkdir(parents=True, exist_ok=True)
            encoder.save_pretrained(out, state_dict=encoder_state, safe_serialization=True)
            self.tokenizer.save_pretrained(out)
        return str(out)


class _EpochWeights:
    """The weights of the epochs still needed (each policy's best, the latest checkpoint's) in this process's
    scratch folder, as its context saves them (the full weights, or under FSDP this rank's shards): a large encoder
    is not held twice more in memory, and under FSDP never assembled whole for this."""

    def __init__(self, ctx: TrainContext):
        self.ctx = ctx
        self.folder = Path(tempfile.mkdtemp(prefix="xgrid-weights-"))
        self.files: dict[int, Path] = {}

    def put(self, epoch: int, model: nn.Module) -> None:
        path = self.folder / weights_file(epoch)
        self.ctx.save_weights(model, path)
        self.files[epoch] = path

    def adopt(self, epoch: int, source: Path) -> None:
        path = self.folder / weights_file(epoch)
        # A copy: the source may be deleted when the next checkpoint is kept.
        shutil.copytree(source, path) if source.is_dir() else shutil.copyfile(source, path)
        self.files[epoch] = path

    def restore(self, epoch: int, model: nn.Module) -> None:
        self.ctx.load_weights(model, self.files[epoch])

    def keep(self, epochs: set[int]) -> None:
        for epoch in set(self.files) - epochs:
            path = self.files.pop(epoch)
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _generators(loaders: dict[str, Any]) -> dict[str, torch.Generator]:
    """Every torch generator the loaders draw from (the loader's own, a sampler's), by task."""
    found = {}
    for name, loader in loaders.items():
        for part, owner in (("loader", loader), ("sampler", getattr(loader, "sampler", None))):
            generator = getattr(owner, "generator", None)
            if isinstance(generator, torch.Generator):
                found[f"{name}.{part}"] = generator
    return found


def _optimizer(model: nn.Module, hp: Hparams, total_steps: int):
    from transformers import get_linear_schedule_with_warmup

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        # Biases and LayerNorm weights are not decayed (BERT's recipe, followed by jiant and XTREME).
        (no_decay if param.ndim < 2 else decay).append(param)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": hp.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=hp.learning_rate, eps=1e-8)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(hp.warmup_ratio * total_steps), max(total_steps, 1))
    return optimizer, scheduler


def _autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return torch.autocast(device_type=device.type, enabled=False)
