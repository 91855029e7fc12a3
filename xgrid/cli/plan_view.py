"""The plan of a search as `xgrid search --dry-run` shows it: a table for people, JSON for scripts (one source
of numbers for both), printed before anything runs.

The dry run looks in the checkpoint store (a folder or an `s3://...` URI) for the plan's stage-1 checkpoints, so
it says which are still to train and which a search would reuse, and estimates only what is left. A store that
cannot be read (no such filesystem, bad credentials, no answer) is a one-line note, never a crash.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from xgrid.cli.common import console
from xgrid.planning.cost import Cost, ModelCost, estimate
from xgrid.planning.plan import Plan

STORE_TIMEOUT_S = 20.0  # a remote store that does not answer by then is reported unchecked


@dataclass(frozen=True)
class StoreCheck:
    root: str | None
    present: frozenset[str] | None  # keys of the plan's checkpoints already there; None: not checked
    error: str | None = None  # why not checked

    def as_json(self) -> dict[str, Any]:
        return {"root": self.root, "checked": self.present is not None, "error": self.error}


def check_store(plan: Plan, store_root: str | None, timeout: float = STORE_TIMEOUT_S) -> StoreCheck:
    """Which of the plan's stage-1 checkpoints the store already holds. Bounded in time: a remote store is asked
    from a helper thread, and one that has not answered after `timeout` seconds is left unchecked."""
    if store_root is None:
        return StoreCheck(None, None, "no store given")
    found: dict[str, Any] = {}

    def look() -> None:
        try:
            from xgrid.running.store import CheckpointStore

            store = CheckpointStore(store_root)
            found["present"] = frozenset(j.key for j in plan.trained_jobs if store.has(j.key))
        except Exception as err:  # noqa: BLE001 - any failure to read the store is reported, not raised
            found["error"] = _one_line(err)

    worker = threading.Thread(target=look, daemon=True, name="xgrid-store-check")
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return StoreCheck(store_root, None, f"no answer from the store within {timeout:g} s")
    if "error" in found:
        return StoreCheck(store_root, None, found["error"])
    return StoreCheck(store_root, found["present"])


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}" if text else type(err).__name__


def costed(plan: Plan, store_root: str | None) -> tuple[Cost, StoreCheck]:
    store = check_store(plan, store_root)
    return estimate(plan, None if store.present is None else store.present.__contains__), store


def target_rows(plan: Plan) -> list[dict[str, Any]]:
    """Per target: what the plan table shows and `--format json` prints (one source for both). `runs`: the
    target's stage-2 runs (`stage2_runs`), one per group of base models with their own settings; the target's
    `training` is its first run's (the only one when the base models share their settings)."""
    rows = []
    for target in plan.space.targets:
        runs = [_run_row(plan, target, models) for _, models in plan.space.stage2_runs(target)]
        runs = [r for r in runs if r["cells"]]
        cells = plan.cells_for(target)
        rows.append({"target": target, "format": cells[0].target_format, "cells": len(cells),
                     "trials": sum(r["trials"] for r in runs), "trains": cells[0].trains,
                     "intermediates": list(dict.fromkeys(c.intermediate for c in cells)),
                     "training": runs[0]["training"], "retrieval_protocol": cells[0].retrieval_protocol,
                     "runs": runs})
    return rows


def _run_row(plan: Plan, target: str, models: tuple[str, ...]) -> dict[str, Any]:
    settings = plan.space.training_for(target, models[0])
    cells = [c for c in plan.cells_for(target) if c.base_model.name in models]
    trains = bool(cells) and cells[0].trains
    return {"base_models": list(models), "cells": len(cells), "trials": sum(plan.trials_of(c) for c in cells if c.trains),
            # What the target fine-tunes with (its model's and its own overrides applied); nothing for a target
            # scored straight from the encoder.
            "training": ({"epochs": settings.epochs, "max_length": settings.max_length,
                          "batch_size": settings.batch_size, "grad_accum": settings.grad_accum,
                          "learning_rate": settings.learning_rate.model_dump(mode="json"),
                          "languages": list(cells[0].languages)} if trains else None)}


def protocol_text(plan: Plan, row: dict[str, Any], run: dict[str, Any] | None = None) -> str:
    """`3 ep, len 256, lr 1e-05..5e-05`: the plan table's protocol column (of one of the target's runs)."""
    run = run or row["runs"][0]
    if run["training"] is None:
        return "scored from the encoder"
    settings = plan.space.training_for(row["target"], run["base_models"][0])
    return f"{settings.epochs} ep, len {settings.max_length}, lr {settings.learning_rate.label()}"


def power_json(plan: Plan) -> list[dict[str, Any]]:
    from dataclasses import asdict

    from xgrid.planning.power import power_lines

    return [asdict(line) | {"can_answer": line.can_answer, "text": line.text()} for line in power_lines(plan)]


def budget_json(plan: Plan, worst: Cost, store_root: str | None = None) -> dict[str, Any] | None:
    """A budgeted space's rounds: the design, the worst case (`worst`: the plan's own cost, every target at
    max_seeds), round 1 (the declared seeds) and the expected share of the worst case, simulated under the space's
    power assumptions."""
    from xgrid.planning.budget import expected_spend, sequential_design
    from xgrid.planning.power import power_lines

    space = plan.space
    if space.budget is None:
        return None
    design = sequential_design(space)
    first = set(space.seeds)
    round1, _ = costed(plan.restricted(lambda c: c.seed in first), store_root)
    line = power_lines(plan)[0]
    expected = expected_spend(space, line.n_syntactic, line.n_semantic)

    def totals(cost: Cost) -> dict[str, Any]:
        return {"stage1_checkpoints": cost.stage1_jobs, "stage2_trials": cost.stage2_trials,
                "retrieval_evaluations": cost.retrieval_evals, "cpu_seconds_on_2_cpus": cost.cpu_seconds,
                "h100_gpu_hours": cost.gpu_hours}

    return {"method": design.describe(), "looks": design.looks(), "levels": design.levels(),
            "worst_case": totals(worst), "round_1": totals(round1),
            "expected_share": None if expected is None else {
                "no_effect": expected.null_share, "effect": expected.effect, "with_effect": expected.effect_share,
                "power_with_effect": expected.effect_power}}


def _cost_text(totals: dict[str, Any], share: float = 1.0) -> str:
    parts = []
    if totals["cpu_seconds_on_2_cpus"] is not None:
        parts.append(f"~{_minutes(share * totals['cpu_seconds_on_2_cpus'])} on 2 CPUs")
    if totals["h100_gpu_hours"] is not None:
        parts.append(f"{_approx(share * totals['h100_gpu_hours'])} H100 GPU-hours")
    return ", ".join(parts) or "no estimate"


def print_budget(budget: dict[str, Any]) -> None:
    say = lambda line: console.print(line, highlight=False, soft_wrap=True, markup=False)
    say(f"budget: {budget['method']}")
    for name, key in (("worst case (every target to max_seeds)", "worst_case"), ("round 1 (the declared seeds)",
                                                                                 "round_1")):
        t = budget[key]
        say(f"  {name}: {t['stage1_checkpoints']} stage-1 checkpoints, {t['stage2_trials']} stage-2 trials, "
            f"{t['retrieval_evaluations']} retrieval evaluations; {_cost_text(t)}")
    share = budget["expected_share"]
    if share is None:
        say("  expected cost: not simulated (a kind has fewer than 2 tasks)")
        return
    say(f"  expected cost (simulated through the same decisions, the power block's task and seed sd): with no "
        f"effect {share['no_effect']:.0%} of the worst case ({_cost_text(budget['worst_case'], share['no_effect'])}); "
        f"with an effect of {share['effect']:g} points on every target {share['with_effect']:.0%} "
        f"({_cost_text(budget['worst_case'], share['with_effect'])}), deciding {share['power_with_effect']:.0%} of them")


def model_json(model: ModelCost) -> dict[str, Any]:
    return {"model": model.model, "source": model.source, "params": model.params,
            "stage1_to_train": model.stage1_to_train, "stage2_trials": model.stage2_trials,
            "retrieval_evaluations": model.retrieval_evals,
            "stage1_example_passes": model.stage1_example_passes,
            "stage2_example_passes": model.stage2_example_passes,
            "cpu_seconds_on_2_cpus": model.cpu_seconds, "h100_gpu_hours": model.gpu_hours, "reason": model.reason}


def memory_json(plan: Plan) -> dict[str, Any] | None:
    """The memory table's rows and assumptions; None when no base model trains on GPUs."""
    from xgrid.planning.memory import ASSUMPTIONS, GPU_SIZES_GB, memory_rows

    rows, notes = memory_rows(plan)
    if not rows and not notes:
        return None
    return {"gpu_sizes_gb": list(GPU_SIZES_GB), "rows": [r.as_json() for r in rows], "assumptions": list(ASSUMPTIONS),
            "notes": notes}


def print_memory(memory: dict[str, Any]) -> None:
    table = Table(title="memory per GPU of a training step (GB; * = the model's own resources)")
    for column in ("model", "strategy", "b x len", "params", "grads", "optimizer", "activations", "total",
                   *[f"{size} GB" for size in memory["gpu_sizes_gb"]]):
        table.add_column(column)
    for r in memory["rows"]:
        setup = (f"{r['strategy']} x{r['workers']} {r['precision']}" + (" +ac" if r["activation_checkpointing"] else "")
                 + (f" +offload ({r['host_gb']:.1f} on host)" if r["cpu_offload"] else ""))
        table.add_row(("* " if r["declared"] else "  ") + r["model"], setup, f"{r['batch_per_gpu']} x {r['max_length']}",
                      *[f"{r[k]:.1f}" for k in ("parameters_gb", "gradients_gb", "optimizer_gb", "activations_gb",
                                                "total_gb")],
                      *["fits" if r["fits"][str(size)] else "no" for size in memory["gpu_sizes_gb"]])
    if memory["rows"]:
        console.print(table)
        console.print("  assumptions: " + "; ".join(memory["assumptions"]), highlight=False, soft_wrap=True)
    for note in memory["notes"]:
        console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)


def plan_json(plan: Plan, store_root: str | None = None) -> dict[str, Any]:
    """The dry run for scripts: the numbers of `print_plan`, unrounded; null where the table says unknown."""
    space = plan.space
    cost, store = costed(plan, store_root)
    return {
        "space": space.name, "fingerprint": space.fingerprint(),
        "base_models": [m.name for m in space.base_models], "seeds": list(space.seeds),
        "selection_policy": space.selection_policy,
        "targets": target_rows(plan),
        "totals": {"cells": len(plan.cells), "stage1_checkpoints": cost.stage1_jobs,
                   "stage1_to_train": cost.stage1_to_train, "stage1_in_store": cost.stage1_in_store,
                   "stage2_trials": cost.stage2_trials, "retrieval_evaluations": cost.retrieval_evals,
                   "stage1_example_passes": cost.stage1_example_passes,
                   "stage2_example_passes": cost.stage2_example_passes},
        "store": store.as_json(),
        "estimates": {"cpu_seconds_on_2_cpus": cost.cpu_seconds, "h100_gpu_hours": cost.gpu_hours,
                      "complete": cost.complete, "models": [model_json(m) for m in cost.models]},
        "power": power_json(plan),
        "memory": memory_json(plan),
        "budget": budget_json(plan, cost, store_root),
        "notes": plan.notes + cost.notes,
    }


def checkpoints_line(cost: Cost, store: StoreCheck, targets: int) -> str:
    n = cost.stage1_jobs
    if store.present is None:
        where = f"{n} to train unless already in the store; store not checked: {store.error}"
    else:
        where = f"{cost.stage1_to_train} to train, {cost.stage1_in_store} already in the store at {store.root}"
    shared = f"; shared by {targets} targets, never {n * targets}" if targets > 1 and n else ""
    return f"unique stage-1 checkpoints: {n} ({where}){shared}"


def model_line(model: ModelCost) -> str:
    size = f", {_params(model.params)} parameters" if model.params is not None else ""
    head = f"  {model.model} ({model.source}{size}): "
    if model.cpu_seconds is not None:
        return head + f"~{_minutes(model.cpu_seconds)} on 2 CPUs"
    if model.gpu_hours is not None:
        return head + f"{_approx(model.gpu_hours)} H100 GPU-hours"
    if model.reason and "training size" in model.reason:
        return head + "no estimate (training size unknown)"
    return head + "no estimate (size unknown offline)"


def batch_lines(space) -> list[str]:
    """`batch_size` is the global batch of a micro-step: what each worker takes and what one update sees; one
    line per base model when their settings or resources differ (`model_overrides`)."""
    lines = {}
    for model in space.base_models:
        workers = space.resources_for(model.name).workers_per_trial
        parts = []
        for name, t in (("stage 1", space.intermediate_training_for(model.name)),
                        ("stage 2", space.training_for(None, model.name))):
            share = f" ({t.batch_size // workers} per worker x {workers} workers)" if workers > 1 else ""
            parts.append(f"{name} {t.batch_size}{share} x grad_accum {t.grad_accum} = {t.batch_size * t.grad_accum} "
                         "examples per update")
        lines.setdefault("; ".join(parts), []).append(model.name)
    if len(lines) == 1:
        return ["  global batch: " + next(iter(lines))]
    return [f"  global batch ({', '.join(models)}): {text}" for text, models in lines.items()]


def print_plan(plan: Plan, store_root: str | None = None) -> None:
    space = plan.space
    cost, store = costed(plan, store_root)
    console.print(f"[bold]search space[/] {space.name}  ({space.fingerprint()})")
    console.print(f"  base models: {', '.join(m.name for m in space.base_models)}   seeds: {space.seeds}   "
                  f"selection: {space.selection_policy}")
    for line in batch_lines(space):
        console.print(line, highlight=False, soft_wrap=True)
    table = Table(title="plan")
    rows = target_rows(plan)
    # A column of base models only when some of them bring their own settings (a row per stage-2 run).
    per_model = any(len(row["runs"]) > 1 for row in rows)
    for column in ("target", *(["base models"] if per_model else []), "format", "cells", "trials", "protocol",
                   "intermediates"):
        table.add_column(column)
    for row in rows:
        for run in row["runs"]:
            models = [", ".join(run["base_models"])] if per_model else []
            table.add_row(row["target"], *models, row["format"], str(run["cells"]),
                          str(run["trials"]) if run["trials"] else "- (scored, not trained)",
                          protocol_text(plan, row, run), ", ".join(row["intermediates"]))
    console.print(table)
    # highlight=False, soft_wrap: a store path or URI is one line, printed as it is
    console.print(checkpoints_line(cost, store, len(space.targets)), highlight=False, soft_wrap=True)
    console.print(f"cells: {len(plan.cells)}   stage-2 trials: {cost.stage2_trials}   "
                  f"retrieval evaluations: {cost.retrieval_evals}")
    passes = lambda n: "unknown" if n is None else f"{n:,}"
    console.print(f"training example-passes: stage 1 {passes(cost.stage1_example_passes)} (checkpoints to train), "
                  f"stage 2 {passes(cost.stage2_example_passes)}")
    console.print("estimated time per base model (stage-1 checkpoints still to train, stage 2, retrieval):")
    for model in cost.models:
        console.print(model_line(model), highlight=False, soft_wrap=True)
    partial = "" if cost.complete else f" ({sum(m.estimated for m in cost.models)} of {len(cost.models)} models)"
    if cost.cpu_seconds is not None:
        console.print(f"estimated wall time on 2 CPUs: ~{_minutes(cost.cpu_seconds)} (with "
                      f"{cost.cpu_start_seconds:.0f} s of start-up){partial}")
    if cost.gpu_hours is not None:
        console.print(f"estimated compute: {_approx(cost.gpu_hours)} H100 GPU-hours (training 6*N*tokens, each stage "
                      f"at its own max length, + evaluation 2*N*tokens, at 40% MFU){partial}")
    if cost.cpu_seconds is None and cost.gpu_hours is None:
        console.print("estimated time: none (no base model could be sized; see the notes)")
    memory = memory_json(plan)
    if memory is not None:
        print_memory(memory)
    power = power_json(plan)
    console.print(f"precision to expect (the syntactic - semantic interval `xgrid compare` will print; Welch t over tasks; the "
                  f"space's `power` block sets the assumptions, +-{space.power.half_width:g} points wanted):")
    for line in power:
        console.print(f"  power {line['text']}", highlight=False, soft_wrap=True)
    short = [line["target"] for line in power if not line["can_answer"]]
    if short:
        console.print(f"[yellow]warning:[/] this space cannot answer its own question at +-{space.power.half_width:g} "
                      f"points on {len(short)} of {len(power)} targets ({', '.join(short)}): add intermediate tasks "
                      "per kind (seeds only shrink the seed part of the noise)", highlight=False, soft_wrap=True)
    budget = budget_json(plan, cost, store_root)
    if budget is not None:
        print_budget(budget)
    for note in plan.notes + cost.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _hours(hours: float) -> str:
    if hours < 0.01:
        return "<0.01"
    return f"{hours:,.0f}" if hours >= 10 else f"{hours:.2g}"


def _approx(hours: float) -> str:
    shown = _hours(hours)
    return shown if shown.startswith("<") else f"~{shown}"


def _params(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"
