"""Pre-flight: what a run needs and this machine can tell before Ray starts, checked all at once.

Every base model's config, weights and fast tokenizer load from disk (a folder, or the local Hugging Face cache
for a hub id); `retrieval.layer` exists in every base model; every dataset split the plan reads is in the
`datasets` cache or in its `local_paths` copy (read the way `xgrid prefetch` checks them: the same `load_part`
and source loads training uses); every `local_paths` folder exists and its task reads it; the resources a trial
asks for fit this machine (local Ray) or the cluster (`check_placeable`, after `ray.init`). Each problem is one
line naming the model, dataset or field; all of them are reported together, and a run never starts on them.
What is missing from the Hugging Face cache only stops a run that cannot download it (offline, or the hub does
not answer one probe): online, training downloads it, as it always has.

A dry run plans a space where it may not run (a laptop, for a cluster): there, what this machine *lacks* (a
hub model or dataset not in the cache, a `local_paths` copy, a GPU) is a warning, and what is wrong wherever
the space runs (a base model folder that does not exist or is not a model, a slow tokenizer, a layer the model
does not have, a copy that lacks a split) stops it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from xgrid.config import EMBEDDED_TINY, Resources, SearchSpace, missing_local_paths
from xgrid.planning.plan import Plan

PREFETCH = "xgrid prefetch SPACE"
SHOWN_PER_TASK = 3  # missing splits named per task; the rest are counted (a whole benchmark can be missing)


class PreflightError(ValueError):
    """What stops a run before it starts: one line per problem (built from its message alone, so it pickles)."""


@dataclass(frozen=True)
class Problem:
    line: str
    # True: this machine lacks something (a folder, a cache entry, a GPU) that the machine a space runs on may
    # have; False: wrong wherever the space runs.
    here: bool = False
    # (repo, "model" or "dataset") when the hub could supply what is missing: a real run that can reach the hub
    # downloads it (as training would), so it stops on this only offline or with the hub out of reach.
    hub_repo: tuple[str, str] | None = None


def preflight(plan: Plan, dry_run: bool = False, address: str | None = None,
              warn: Callable[[str], None] | None = None) -> None:
    """Raise PreflightError listing every problem a run of `plan` on this machine would meet. With `dry_run`,
    problems of this machine only are passed to `warn` (default: stderr) unless something else is wrong too.
    With `address` (a cluster), resources are checked by `check_placeable` once Ray is joined."""
    problems = model_problems(plan.space) + data_problems(plan)
    if not address:
        every = distinct_resources(plan.space)
        available = local_resources(count_gpus=any(r.gpus_per_worker > 0 for r in every))
        lines = dict.fromkeys(line for r in every for line in resource_problems(r, available))  # once each
        problems += [Problem(line, here=True) for line in lines]
    if not dry_run:
        problems = _without_downloadable(problems)
    if not problems:
        return
    if dry_run and all(p.here for p in problems):
        for p in problems:
            unless = ", unless the Hugging Face hub answers: then it downloads it" if p.hub_repo else ""
            (warn or _stderr)(f"warning: {p.line} (a run on this machine stops on this{unless})")
        return
    raise PreflightError("\n".join(dict.fromkeys(p.line for p in problems)))


def _without_downloadable(problems: list[Problem]) -> list[Problem]:
    """Drop what the run would download, when the hub answers (one probe; none when offline or nothing is
    missing). A dry run never asks the hub: it warns of them all."""
    from xgrid.data.hub import hub_offline, probe_hub

    fetchable = [p for p in problems if p.hub_repo]
    if not fetchable or hub_offline() or probe_hub(*fetchable[0].hub_repo) is not None:
        return problems
    return [p for p in problems if not p.hub_repo]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


# --- base models ------------------------------------------------------------------------------------------------
def model_problems(space: SearchSpace) -> list[Problem]:
    from xgrid.models.tiny import TinyModelConfig

    problems = []
    for i, base in enumerate(space.base_models):
        label = f"base_models[{i}] ({base.name})"
        if base.source == EMBEDDED_TINY:  # built from a config object: nothing to load (and no torch import)
            layers, problem, here = TinyModelConfig().num_layers, None, False
        else:
            from xgrid.models.loading import HUB_ID, check_model

            check = check_model(base.source)
            layers, problem, here = check.layers, check.problem, check.absent
        if problem:
            # not here, and named like a hub id: the hub may have it (a folder that is not here, it cannot)
            hub = here and not os.path.exists(os.path.expanduser(base.source)) and HUB_ID.match(base.source)
            # A folder that does not exist stops a dry run too: a space names the folder it will load, and a typo
            # there is the most common way to lose a whole run. Only a hub id may be fetched elsewhere.
            problems.append(Problem(f"{label}: {problem}", bool(hub), (base.source, "model") if hub else None))
        if layers is not None and (line := layer_problem(space.retrieval.layer, layers, label)):
            problems.append(Problem(line))
    return problems


def layer_problem(layer: int | None, layers: int, label: str) -> str | None:
    """`hidden_states` has layers + 1 entries (0: the embeddings); a negative index counts from the last."""
    if layer is None or -(layers + 1) <= layer <= layers:
        return None
    return (f"retrieval.layer: {layer} does not exist in {label}, which has {layers} layers (hidden states 0, the "
            f"embeddings, to {layers}, the last; or -1 for the last)")


# --- data -------------------------------------------------------------------------------------------------------
def data_problems(plan: Plan) -> list[Problem]:
    """Every split the plan reads, from where the run will read it: a `local_paths` folder (which must exist
    and hold it) or the `datasets` cache (no network: a split the run would have to download is missing)."""
    from xgrid.data.sources import DatasetUnavailableError, MissingSplitError
    from xgrid.planning.needs import dataset_needs
    from xgrid.running.requests import load_context

    space = plan.space
    problems = [Problem(f"{line}: local_paths must name folders that this machine (and, on a cluster, every node) "
                        f"sees; copy the data there, or write copies with `{PREFETCH} --to DIR`", here=True)
                for line in missing_local_paths(space)]
    absent = {name for name, path in space.local_paths.items() if not os.path.exists(path)}
    ctx = load_context(space)
    uncached: dict[str, list[Any]] = {}  # task -> the hub reads missing from the cache
    broken: dict[str, str] = {}  # task -> the first thing its local data lacks
    seen: set = set()
    for task, need in dataset_needs(plan):
        source = task.source
        if task.name in absent or task.name in broken or getattr(source, "seeded_by_microbench", False):
            continue  # said already, or generated in memory (the embedded micro-benchmark)
        if task.name in space.local_paths or not hasattr(source, "parts"):
            try:  # a local copy or local corpus: read it as the run will (the hub is never asked)
                source.load(task, need.language, need.role, ctx)
            except MissingSplitError:
                pass  # the task skips a split its data does not have, in a run as here
            except DatasetUnavailableError as err:
                broken[task.name] = _one_line(err)
                problems.append(Problem(f"{_where(space, task.name)}: {broken[task.name]}",
                                        here=task.name not in space.local_paths))
            except Exception as err:  # noqa: BLE001 - a copy the task cannot read, whatever `datasets` says
                broken[task.name] = f"{type(err).__name__}: {_one_line(err)}"
                problems.append(Problem(f"{_where(space, task.name)}: cannot be read ({broken[task.name]})"))
            continue
        problems += _hub_problems(task, need, ctx, seen, uncached)
    for name, parts in uncached.items():
        more = f" and {len(parts) - SHOWN_PER_TASK} more" if len(parts) > SHOWN_PER_TASK else ""
        shown = "; ".join(f"{p.path} config {p.config_label} split {p.split!r}" for p in parts[:SHOWN_PER_TASK])
        problems.append(Problem(
            f"task {name}: {len(parts)} dataset split(s) are not in the local Hugging Face cache ({shown}{more}); "
            f"on a machine with internet run `{PREFETCH}` and share its HF_HOME, or write copies with "
            f"`{PREFETCH} --to DIR` and name them in local_paths.{name}", here=True,
            hub_repo=(parts[0].path, "dataset")))
    return problems


def _hub_problems(task, need, ctx, seen: set, uncached: dict[str, list[Any]]) -> list[Problem]:
    from xgrid.data.hub import DatasetNotCachedError, hub_parts, load_part
    from xgrid.data.sources import MissingSplitError

    problems = []
    for part in hub_parts(task.source, task, need.language, need.role):
        if part in seen:
            continue
        seen.add(part)
        try:
            load_part(part, ctx, allow_network=False)  # the cache only: what an offline run reads
        except MissingSplitError:
            continue  # no such split on the hub: the task skips it
        except DatasetNotCachedError:
            uncached.setdefault(task.name, []).append(part)
        except Exception as err:  # noqa: BLE001
            problems.append(Problem(f"task {task.name}: {part.path} config {part.config_label} split {part.split!r} "
                                    f"cannot be read from the cache ({type(err).__name__}: {_one_line(err)})"))
    return problems


def _where(space: SearchSpace, task: str) -> str:
    return f"local_paths.{task}" if task in space.local_paths else f"task {task}"


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines)[:600] if lines else type(err).__name__


# --- resources --------------------------------------------------------------------------------------------------
def local_resources(count_gpus: bool = True) -> dict[str, float]:
    """What local Ray will have: this machine's CPUs and GPUs. Counting GPUs imports torch (seconds), so a space
    that asks for none skips it."""
    return {"CPU": float(os.cpu_count() or 1), "GPU": float(_gpu_count()) if count_gpus else 0.0}


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no usable CUDA is no GPU
        return 0


def resource_problems(resources: Resources, available: Mapping[str, float],
                      nodes: list[Mapping[str, float]] | None = None, where: str = "this machine") -> list[str]:
    """What keeps a trial from ever being placed. A trial is `workers_per_trial` bundles of {cpus_per_worker CPU,
    gpus_per_worker GPU}: all of them must fit in `available` (the totals), and each on one node (`nodes`, when
    known: a bundle is never split across nodes). Ray would otherwise queue the trial forever, silently."""
    workers, cpus, gpus = resources.workers_per_trial, resources.cpus_per_worker, resources.gpus_per_worker
    have_cpus, have_gpus = float(available.get("CPU", 0)), float(available.get("GPU", 0))
    problems = []
    if gpus > 0 and have_gpus == 0:
        problems.append(f"--gpus-per-worker/resources.gpus_per_worker: {where} has no GPU (asked {gpus:g} per "
                        f"worker); set it to 0 for a CPU run")
    elif gpus > 0 and workers * gpus > have_gpus:
        problems.append(f"--gpus-per-worker/resources.gpus_per_worker: a trial needs {workers} worker(s) x {gpus:g} "
                        f"= {workers * gpus:g} GPUs; {where} has {have_gpus:g} (--workers-per-trial/"
                        f"resources.workers_per_trial)")
    if workers * cpus > have_cpus:
        problems.append(f"--cpus-per-worker/resources.cpus_per_worker: a trial needs {workers} worker(s) x {cpus:g} "
                        f"= {workers * cpus:g} CPUs; {where} has {have_cpus:g} (--workers-per-trial/"
                        f"resources.workers_per_trial)")
    if nodes and not problems:
        fits = [n for n in nodes if float(n.get("CPU", 0)) >= cpus and float(n.get("GPU", 0)) >= gpus]
        if not fits:
            biggest = max(nodes, key=lambda n: (float(n.get("GPU", 0)), float(n.get("CPU", 0))))
            have = f"{float(biggest.get('CPU', 0)):g} CPUs and {float(biggest.get('GPU', 0)):g} GPUs"
            problems.append(f"--cpus-per-worker/--gpus-per-worker (resources): one worker needs {cpus:g} CPUs and "
                            f"{gpus:g} GPUs on one node; the largest node of {where} has {have}")
    return problems


def distinct_resources(space: SearchSpace) -> list[Resources]:
    """Each base model's resources (`model_overrides`), once each: what the trials of the space request."""
    return list(dict.fromkeys(space.resources_for(m.name) for m in space.base_models))


def check_placeable(space: SearchSpace, cluster_resources: Mapping[str, Any],
                    nodes: list[Mapping[str, Any]] | None = None) -> None:
    """For a cluster (`--address`), after `ray.init`: `cluster_resources` is `ray.cluster_resources()`, `nodes`
    optionally each alive node's resources (`[n["Resources"] for n in ray.nodes() if n["Alive"]]`). Raises
    PreflightError (one line per problem) when a trial could never be placed."""
    problems = list(dict.fromkeys(line for r in distinct_resources(space)
                                  for line in resource_problems(r, cluster_resources, nodes, where="the cluster")))
    if problems:
        raise PreflightError("\n".join(problems))


__all__ = ["PreflightError", "Problem", "check_placeable", "data_problems", "layer_problem", "local_resources",
           "model_problems", "preflight", "resource_problems"]
