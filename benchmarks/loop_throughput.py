"""Training throughput of xgrid's phase loop against a bare PyTorch loop, the evaluation share of a phase, and the
padding waste of the embedded micro-benchmark.

    python benchmarks/loop_throughput.py [--repeats 5] [--phases stage2:mb_udpos stage2:mb_xnli stage1:mb_ccg ...]

Everything runs in this process on one thread (`torch.set_num_threads(1)`), as a trial does. A phase is a real
request of the default space (`search_spaces/microbench_default.yaml`, built by `build_plan` and
`xgrid.running.requests`): `stage2:<target>` is the target's `none` cell (seed 0), `stage1:<task>` the stage-1 job
of that intermediate task (seed 0), both at the space's batch size, max length, epochs and example caps, on the
tiny model (`ensure_tiny_model`).

- xgrid: `run_phase(request, LocalContext())`, the whole phase as a trial runs it. Its training time is the sum
  of the wall times of its `_Trainer._train_epoch` calls (timed by wrapping the method: one `perf_counter` pair
  per epoch, nothing inside the step): each call is one epoch of batches drawn, moved, forwarded, backpropagated,
  clipped and stepped, and nothing else (the dev scoring, weight saving and reporting that follow an epoch are
  outside it). Its evaluation time is the sum of `_Trainer._evaluate_dev` (dev splits after each epoch) and
  `_Trainer._final` (reloading the selected weights and scoring the test splits) calls; evaluation share =
  evaluation seconds / the phase's `seconds` (what the phase reports, from the tokenizer load to its last report).
- bare: a plain loop written here, on the same featurized rows (`xgrid.training.data.featurize`, the phase's own
  featurization of the same capped split), the same model (the tiny encoder loaded with `AutoModel.from_pretrained`
  plus a head of the same shape: dropout + linear for tagging, RoBERTa's dense-tanh-linear for classification),
  the same batch size and the same batches (a `RandomSampler` permutation from a generator seeded as
  `LocalContext` seeds it, padded to the batch's longest row), AdamW with the same decay groups and a linear
  warmup schedule, grad-norm clipping at the same value (one call per step, as any fine-tuning loop has), no
  evaluation. Its time is the wall of its epochs, measured the same way.

examples/s = training examples x epochs / training seconds; tokens/s counts real (non-pad) tokens. Each repetition
runs xgrid and bare back to back (alternating which goes first), so a loaded machine slows both; the printed
ratio is xgrid / bare of the per-repetition figures (median, min, max). Goal (issue 14): xgrid >= 0.9 of the
bare loop.

Padding waste: for every training task of the default space (stage 1's and the targets'), real tokens / padded
tokens over one epoch of batches as the loop draws them (shuffled, padded to each batch's longest row), and
what grouping by length would give (sorting by length within shuffled buckets of `--bucket` batches; a what-if
only: the loop does not batch that way). Also the featurization seconds of a phase's splits (what caching
featurized data across the phases of a search would save).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from xgrid.config import load_space
from xgrid.models.tiny import ensure_tiny_model
from xgrid.planning.plan import build_plan
from xgrid.running.requests import stage1_request, stage2_request
from xgrid.spaces import resolve_space
from xgrid.tasks import default_registry
from xgrid.training import phase as phase_module
from xgrid.training.context import LocalContext
from xgrid.training.data import featurize, load_split
from xgrid.training.phase import PhaseRequest, run_phase

DEFAULT_PHASES = ("stage2:mb_udpos", "stage2:mb_xnli", "stage1:mb_ccg", "stage1:mb_para")
GOAL = 0.9


# --- the requests --------------------------------------------------------------------------------------------
def requests(names: list[str], store: Path) -> tuple[dict[str, PhaseRequest], object]:
    registry = default_registry()
    plan = build_plan(load_space(resolve_space(None), registry), registry)
    space = plan.space
    base = str(ensure_tiny_model(store, space.microbench_seed))
    out = {}
    for name in names:
        stage, task = name.split(":", 1)
        if stage == "stage2":
            cell = next(c for c in plan.cells if c.target == task and c.intermediate == "none" and c.seed == 0)
            out[name] = stage2_request(cell, space.training_for(task, "tiny").learning_rate.fixed_value(), space, base)
        elif stage == "stage1":
            job = next(j for j in plan.jobs if j.intermediate == task and j.seed == 0)
            out[name] = stage1_request(job, space, base)
        else:
            raise SystemExit(f"{name!r}: expected stage1:<task> or stage2:<target>")
    return out, plan


# --- xgrid, timed by wrapping _Trainer's methods -----------------------------------------------------------
class Clock:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    def wrap(self, name: str, method):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
        return timed


@contextmanager
def timed_trainer(clock: Clock):
    trainer = phase_module._Trainer
    saved = {name: getattr(trainer, name) for name in ("_train_epoch", "_evaluate_dev", "_final")}
    try:
        for name, method in saved.items():
            setattr(trainer, name, clock.wrap(name, method))
        yield
    finally:
        for name, method in saved.items():
            setattr(trainer, name, method)


def run_xgrid(request: PhaseRequest) -> dict[str, float]:
    clock = Clock()
    with timed_trainer(clock):
        result = run_phase(request, LocalContext())
    evaluation = clock.seconds.get("_evaluate_dev", 0.0) + clock.seconds.get("_final", 0.0)
    return {"train": clock.seconds["_train_epoch"], "evaluation": evaluation, "phase": result.seconds}


# --- the bare loop -----------------------------------------------------------------------------------------
class TokenHead(nn.Module):
    def __init__(self, hidden, n):
        super().__init__()
        self.dropout, self.out = nn.Dropout(0.1), nn.Linear(hidden, n)

    def forward(self, h):
        return self.out(self.dropout(h))


class ClsHead(nn.Module):
    def __init__(self, hidden, n):
        super().__init__()
        self.dropout, self.dense, self.out = nn.Dropout(0.1), nn.Linear(hidden, hidden), nn.Linear(hidden, n)

    def forward(self, h):
        return self.out(self.dropout(torch.tanh(self.dense(self.dropout(h[:, 0])))))


def pad(rows: list[dict], key: str, value: int, width: int) -> torch.Tensor:
    return torch.tensor([r[key] + [value] * (width - len(r[key])) for r in rows], dtype=torch.long)


def bare_collate(rows: list[dict], pad_id: int, tagging: bool) -> dict[str, torch.Tensor]:
    width = max(len(r["input_ids"]) for r in rows)
    batch = {"input_ids": pad(rows, "input_ids", pad_id, width), "attention_mask": pad(rows, "attention_mask", 0, width)}
    batch["labels"] = pad(rows, "labels", -100, width) if tagging else torch.tensor([r["labels"] for r in rows])
    return batch


class GroupedBatches:
    """Batches of one shuffled epoch, each bucket of `bucket` batches sorted by length before it is cut: padding
    drops to the length spread inside a batch, and the batches are shuffled again so lengths do not trend."""

    def __init__(self, n, batch_size, generator, bucket, rows):
        self.n, self.batch_size, self.generator, self.bucket = n, batch_size, generator, bucket
        self.lengths = [len(r["input_ids"]) for r in rows]

    def __len__(self):
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator).tolist()
        span = self.batch_size * self.bucket
        batches = []
        for start in range(0, self.n, span):
            chunk = sorted(order[start: start + span], key=self.lengths.__getitem__)
            batches += [chunk[i: i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        return iter([batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist()])


def featurized(request: PhaseRequest):
    """The phase's own featurization of its (single) training task's capped English train split."""
    from xgrid.models.loading import load_tokenizer

    (task,) = request.train_tasks
    if task.format not in ("tagging", "classification"):
        raise SystemExit(f"{task.name}: the bare loop is written for tagging and classification tasks, "
                         f"not {task.format}")
    tokenizer = load_tokenizer(request.encoder_source)
    examples = load_split(task, "en", "train", request.load, request.hparams.max_train_examples)
    return task, tokenizer, featurize(task, examples, tokenizer, request.hparams.max_length, training=True)


def run_bare(request: PhaseRequest, task, tokenizer, split, record: list | None = None,
             bucket: int | None = None) -> dict[str, float]:
    from transformers import AutoModel, get_linear_schedule_with_warmup

    hp = request.hparams
    tagging = task.format == "tagging"
    rows = split.rows
    n_labels = 1 + max(max(r["labels"]) if tagging else r["labels"] for r in rows)
    torch.manual_seed(request.seed)
    # As xgrid loads it (`load_encoder`): fp32, no pooler (the tiny model has none; no format uses one).
    encoder = AutoModel.from_pretrained(request.encoder_source, dtype=torch.float32, add_pooling_layer=False)
    head = (TokenHead if tagging else ClsHead)(encoder.config.hidden_size, max(n_labels, 2))
    params = list(encoder.parameters()) + list(head.parameters())
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": hp.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=hp.learning_rate, eps=1e-8)
    steps = math.ceil(len(rows) / hp.batch_size) * hp.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(hp.warmup_ratio * steps), steps)
    generator = torch.Generator().manual_seed(request.seed)
    pad_id = tokenizer.pad_token_id
    collate = lambda chunk: bare_collate(chunk, pad_id, tagging)
    loader = DataLoader(rows, batch_size=hp.batch_size, shuffle=True, generator=generator, collate_fn=collate)
    if bucket:  # the what-if: the same shuffle, sorted by length within buckets of `bucket` batches
        loader = DataLoader(rows, batch_sampler=GroupedBatches(len(rows), hp.batch_size, generator, bucket, rows),
                            collate_fn=collate)
    encoder.train(), head.train()
    seconds = 0.0
    for epoch in range(1, hp.epochs + 1):
        t0 = time.perf_counter()
        generator.manual_seed(generator.initial_seed() + epoch)  # as LocalContext.set_epoch: the phase's batches
        for batch in loader:
            if record is not None:
                record.append(fingerprint(batch))
            hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            logits = head(hidden)
            loss = (F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100) if tagging
                    else F.cross_entropy(logits, batch["labels"]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, hp.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        seconds += time.perf_counter() - t0
    return {"train": seconds}


# --- padding ------------------------------------------------------------------------------------------------
def padding(rows: list[dict], batch_size: int, seed: int, bucket: int) -> tuple[float, float, int]:
    """(real/padded over one epoch of batches as the phase's loader draws them, real/padded with length-grouped
    batches of the same shuffle, real tokens)."""
    # A multiple-choice row holds one sequence per choice; its collate pads every choice of a batch together.
    seqs = [[len(x) for x in r["input_ids"]] if r["input_ids"] and isinstance(r["input_ids"][0], list)
            else [len(r["input_ids"])] for r in rows]
    longest, count = [max(s) for s in seqs], [len(s) for s in seqs]
    ctx = LocalContext()
    loader = ctx.loader(list(range(len(rows))), batch_size, True, lambda ids: ids, seed)
    ctx.set_epoch(loader, 1)
    batches = list(loader)
    padded = lambda batch: sum(count[i] for i in batch) * max(longest[i] for i in batch)
    real = sum(sum(s) for s in seqs)
    drawn = sum(padded(b) for b in batches)
    order = [i for b in batches for i in b]
    grouped = 0
    span = batch_size * bucket
    for start in range(0, len(order), span):
        chunk = sorted(order[start: start + span], key=lambda i: longest[i])
        grouped += sum(padded(chunk[i: i + batch_size]) for i in range(0, len(chunk), batch_size))
    return real / drawn, real / grouped, real


def fingerprint(batch: dict[str, torch.Tensor]) -> int:
    return hash((batch["input_ids"].numpy().tobytes(), batch["labels"].numpy().tobytes()))


@contextmanager
def recorded_batches(record: list):
    """The training batches xgrid's loop draws (fingerprints), for checking that the bare loop draws the same."""
    trainer = phase_module._Trainer
    train_epoch, collate = trainer._train_epoch, trainer._collate
    training = [False]

    def epoch(self, *args, **kwargs):
        training[0] = True
        try:
            return train_epoch(self, *args, **kwargs)
        finally:
            training[0] = False

    def recording_collate(self, name):
        inner = collate(self, name)

        def collated(rows):
            batch = inner(rows)
            if training[0]:
                record.append(fingerprint(batch))
            return batch
        return collated

    trainer._train_epoch, trainer._collate = epoch, recording_collate
    try:
        yield
    finally:
        trainer._train_epoch, trainer._collate = train_epoch, collate


def describe(values: list[float], fmt: str = "{:.0f}") -> str:
    return (f"median {fmt.format(statistics.median(values))} (min {fmt.format(min(values))}, "
            f"max {fmt.format(max(values))})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--phases", nargs="*", default=list(DEFAULT_PHASES),
                        help="stage2:<target> (its none cell) or stage1:<intermediate task> of the default space "
                             "(none: the padding table only)")
    parser.add_argument("--bucket", type=int, default=50, help="batches per bucket of the length-grouping what-if")
    parser.add_argument("--grouped", action="store_true",
                        help="also time the bare loop on length-grouped batches (the padding what-if)")
    parser.add_argument("--no-padding", action="store_true", help="skip the padding table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from xgrid.models.loading import quiet_transformers

    quiet_transformers()
    store = Path(tempfile.mkdtemp(prefix="xgrid-throughput-"))
    reqs, plan = requests(args.phases, store)
    ratios_all = []
    for name, request in reqs.items():
        t0 = time.perf_counter()
        task, tokenizer, split = featurized(request)
        featurize_s = time.perf_counter() - t0
        rows = split.rows
        n, epochs = len(rows), request.hparams.epochs
        tokens = sum(sum(r["attention_mask"]) for r in rows)  # the bare loop's formats: one sequence per row
        # Warm-up (first-call costs out of the figures), checking that both loops train on the same batches.
        drawn_by_xgrid, drawn_by_bare = [], []
        with recorded_batches(drawn_by_xgrid):
            run_xgrid(request)
        run_bare(request, task, tokenizer, split, drawn_by_bare)
        if drawn_by_xgrid != drawn_by_bare:
            raise SystemExit(f"{name}: the bare loop does not draw the phase's batches "
                             f"({len(drawn_by_bare)} vs {len(drawn_by_xgrid)} batches)")
        x, b, share, grouped = [], [], [], []
        for repeat in range(args.repeats):
            # Alternating which runs first, so a drift in the machine's load does not favour one side.
            if repeat % 2:
                br = run_bare(request, task, tokenizer, split)
                xr = run_xgrid(request)
            else:
                xr = run_xgrid(request)
                br = run_bare(request, task, tokenizer, split)
            if args.grouped:
                grouped.append(n * epochs / run_bare(request, task, tokenizer, split, bucket=args.bucket)["train"])
            x.append(n * epochs / xr["train"])
            b.append(n * epochs / br["train"])
            share.append(xr["evaluation"] / xr["phase"])
        ratios = [xi / bi for xi, bi in zip(x, b)]
        ratios_all.append(statistics.median(ratios))
        per_token = tokens / n
        print(f"{name}: {n} training examples x {epochs} epochs, batch {request.hparams.batch_size}, "
              f"{per_token:.1f} real tokens/example; featurizing its train split {featurize_s:.2f} s")
        print(f"  xgrid   examples/s {describe(x)}; tokens/s {describe([v * per_token for v in x])}")
        print(f"  bare    examples/s {describe(b)}; tokens/s {describe([v * per_token for v in b])}")
        print(f"  ratio xgrid/bare {describe(ratios, '{:.3f}')} (goal >= {GOAL})")
        if grouped:
            print(f"  bare, length-grouped batches (what-if) examples/s {describe(grouped)}; vs bare "
                  f"{describe([g / bi for g, bi in zip(grouped, b)], '{:.3f}')}")
        print(f"  evaluation share of the phase (dev + test scoring / phase seconds) {describe(share, '{:.1%}')}")
    if ratios_all:
        print(f"overall: median ratio per phase {', '.join(f'{r:.3f}' for r in ratios_all)}; "
              f"{'goal met' if min(ratios_all) >= GOAL else 'goal NOT met'} for all")
    if args.no_padding:
        return
    space = plan.space
    print(f"padding on the default space (real / padded tokens per epoch; length-grouped in buckets of "
          f"{args.bucket} batches, a what-if):")
    seen = set()
    totals = [0.0, 0.0, 0.0]
    groups = [(job.task_specs, space.intermediate_training_for("tiny")) for job in plan.jobs if job.seed == 0]
    groups += [((cell.train_task,), space.training_for(cell.target, "tiny")) for cell in plan.cells
               if cell.trains and cell.intermediate == "none" and cell.seed == 0]
    from xgrid.models.loading import load_tokenizer
    from xgrid.running.requests import load_context

    load = load_context(space)
    tokenizer = load_tokenizer(ensure_tiny_model(store, space.microbench_seed))
    for specs, settings in groups:
        for task in specs:
            if task.name in seen:
                continue
            seen.add(task.name)
            t0 = time.perf_counter()
            examples = load_split(task, "en", "train", load, settings.max_train_examples)
            rows = featurize(task, examples, tokenizer, settings.max_length, training=True).rows
            seconds = time.perf_counter() - t0
            drawn, grouped, real = padding(rows, settings.batch_size, 0, args.bucket)
            totals[0] += real
            totals[1] += real / drawn
            totals[2] += real / grouped
            print(f"  {task.name:>10}: {len(rows):5d} rows, {drawn:.3f} as drawn, {grouped:.3f} grouped "
                  f"(load + featurize {seconds:.2f} s)")
    print(f"  all tasks: {totals[0] / totals[1]:.3f} as drawn, {totals[0] / totals[2]:.3f} length-grouped")


if __name__ == "__main__":
    main()
