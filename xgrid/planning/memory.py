"""Per-GPU memory of a trial, for `xgrid search --dry-run`: parameters, gradients, optimizer state and activations
at the space's batch and length, for each base model under its own resources and the two usual alternatives (one
GPU with DDP; FSDP2 over 8), with a fits / does-not-fit verdict for 40, 80 and 141 GB GPUs.

It models what xgrid runs, not a generic recipe: fp32 master weights (encoders are loaded in float32), AdamW (two
fp32 moments), bf16 autocast, DDP through Ray Train (gradient buckets beside the gradients with more than one
worker), FSDP2 with every transformer block its own unit and the root unit (embeddings, heads) gathered for the
whole step, a bf16 mixed-precision policy where `precision: bf16`, CPU offload moving the sharded state to host
memory. Activations follow Korthikanti et al. (2022, "Reducing activation recomputation"): 34·s·b·h bytes per
layer in 16-bit, without the 5·a·s² attention-score term, since PyTorch's fused attention (SDPA) does not keep
the scores. `ASSUMPTIONS` is printed under the table.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from xgrid.config import EMBEDDED_TINY, Resources, SearchSpace
from xgrid.planning.plan import Plan

GB = 1e9
GPU_SIZES_GB = (40, 80, 141)  # A100-40GB; A100/H100-80GB; H200
ALLOCATOR_SLACK = 1.10  # the caching allocator's fragmentation and temporary buffers
CONTEXT_GB = 1.5  # CUDA context, cuBLAS workspaces and NCCL buffers per process
ACTIVATION_BYTES_PER_LAYER_16BIT = 34  # x s x b x h: Korthikanti et al. 2022, Table 2 (no sequence parallelism)
ALTERNATIVES = (("ddp", 1), ("fsdp", 8))

ASSUMPTIONS = (
    "fp32 master weights (4 B/param) and gradients (4 B), AdamW moments 8 B/param; bf16 adds the autocast copy of "
    "the weights (2 B) under DDP, FSDP2 gathers in bf16 (fp32 without bf16)",
    "DDP over several workers keeps gradient buckets beside the gradients (+4 B/param); one worker has no DDP",
    "FSDP2: the sharded state / workers, plus two gathered blocks (one computing, one prefetched) and the root unit "
    "(embeddings, heads) with its fp32 gradients for the whole step; cpu_offload moves the sharded state to host "
    "memory (shown apart)",
    "activations 34*s*b*h bytes per layer in 16-bit (x2 in fp32), fused attention (no s^2 scores); with "
    "activation checkpointing each layer keeps its input (2*s*b*h) and one layer is recomputed at a time",
    f"b = the global batch / workers, s = max_length: the largest b*s of stage 1 and every target; total = sum x "
    f"{ALLOCATOR_SLACK:g} (allocator) + {CONTEXT_GB:g} GB (CUDA, NCCL); evaluation keeps no activations (smaller)",
)


@dataclass(frozen=True)
class Architecture:
    layers: int
    hidden: int
    vocab: int
    params: float  # the encoder's parameters (mT5: its encoder only)
    positions: int = 514

    @property
    def root_params(self) -> float:
        """What the root FSDP unit holds: the embeddings (heads are a few thousand parameters)."""
        return float((self.vocab + self.positions) * self.hidden)

    @property
    def block_params(self) -> float:
        return (self.params - self.root_params) / self.layers


# The encoders the study names, from their published configs (hub ids as xgrid's spaces write them): the table
# needs them offline. A local folder or a config in the Hugging Face cache is read instead for any other model.
KNOWN_ARCHITECTURES = {
    "FacebookAI/xlm-roberta-base": Architecture(12, 768, 250_002, 278e6),
    "FacebookAI/xlm-roberta-large": Architecture(24, 1024, 250_002, 560e6),
    "facebook/xlm-roberta-xl": Architecture(36, 2560, 250_880, 3.48e9),
    "facebook/xlm-roberta-xxl": Architecture(48, 4096, 250_880, 10.7e9),
    "google-bert/bert-base-multilingual-cased": Architecture(12, 768, 119_547, 178e6, 512),
    # mT5 encoders: 24 blocks, gated-GELU feed-forward, relative positions (no position table)
    "google/mt5-xl": Architecture(24, 2048, 250_112, 1.67e9, 0),
    "google/mt5-xxl": Architecture(24, 4096, 250_112, 5.66e9, 0),
}


@functools.lru_cache(maxsize=None)
def architecture(source: str) -> tuple[Architecture | None, str | None]:
    """(architecture, None), or (None, why it is unknown offline). Never downloads."""
    if source in KNOWN_ARCHITECTURES:
        return KNOWN_ARCHITECTURES[source], None
    from xgrid.planning.cost import model_params

    params, reason = model_params(source)
    if params is None:
        return None, reason
    try:
        from transformers import AutoConfig

        folder = Path(source).expanduser()
        config = AutoConfig.from_pretrained(str(folder) if folder.is_dir() else source, local_files_only=True)
    except Exception as err:  # noqa: BLE001 - known by size (KNOWN_PARAMS) but not by shape
        return None, f"its shape is unknown offline ({type(err).__name__})"
    hidden = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "num_layers", None)
    if not hidden or not layers:
        return None, f"its config ({config.model_type}) names no hidden size or layer count"
    return Architecture(int(layers), int(hidden), int(config.vocab_size), float(params),
                        int(getattr(config, "max_position_embeddings", 0) or 0)), None


@dataclass(frozen=True)
class MemoryRow:
    model: str
    strategy: str
    workers: int
    precision: str
    activation_checkpointing: bool
    cpu_offload: bool
    declared: bool  # the model's own resources (the others are what-ifs)
    batch_per_gpu: int
    max_length: int
    parameters_gb: float
    gradients_gb: float
    optimizer_gb: float
    activations_gb: float
    total_gb: float
    host_gb: float  # offloaded to the host per process (cpu_offload)
    fits: dict[str, bool]  # "40" -> whether the total fits a 40 GB GPU

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def per_gpu_memory(arch: Architecture, resources: Resources, batch: int, length: int) -> dict[str, float]:
    """Bytes per GPU (and per host process) of one training step: see the module's assumptions."""
    n, w = arch.params, resources.workers_per_trial
    bf16 = resources.precision == "bf16"
    fsdp = resources.strategy == "fsdp"
    per_gpu_batch = max(1, batch // w)
    if fsdp:
        gathered = (2 if bf16 else 4) * (arch.root_params + 2 * arch.block_params)
        sharded_params, sharded_grads, optimizer = 4 * n / w, 4 * n / w, 8 * n / w
        unsharded_grads = 4 * (arch.root_params + arch.block_params)  # before the reduce-scatter, fp32
        host = 0.0
        if resources.cpu_offload:
            host, sharded_params, sharded_grads, optimizer = sharded_params + sharded_grads + optimizer, 0.0, 0.0, 0.0
        parameters, gradients = sharded_params + gathered, sharded_grads + unsharded_grads
    else:
        parameters = 4 * n + (2 * n if bf16 else 0)
        gradients = 4 * n * (2 if w > 1 else 1)
        optimizer, host = 8 * n, 0.0
    element = 2 if bf16 else 4
    tokens_x_hidden = length * per_gpu_batch * arch.hidden
    one_layer = ACTIVATION_BYTES_PER_LAYER_16BIT / 2 * element * tokens_x_hidden
    if resources.activation_checkpointing:
        activations = arch.layers * element * tokens_x_hidden + one_layer
    else:
        activations = arch.layers * one_layer
    total = (parameters + gradients + optimizer + activations) * ALLOCATOR_SLACK + CONTEXT_GB * GB
    return {"parameters": parameters, "gradients": gradients, "optimizer": optimizer, "activations": activations,
            "total": total, "host": host, "batch_per_gpu": per_gpu_batch}


def _largest_step(space: SearchSpace, model: str, workers: int) -> tuple[int, int]:
    """(global batch, max length) of the stage or target with the most tokens per GPU micro-batch."""
    blocks = [space.intermediate_training_for(model)] + [space.training_for(t, model) for t in space.targets]
    best = max(blocks, key=lambda t: max(1, t.batch_size // workers) * t.max_length)
    return best.batch_size, best.max_length


def memory_rows(plan: Plan) -> tuple[list[MemoryRow], list[str]]:
    """Rows for each base model that trains on GPUs (its own resources, then the alternatives), and a note per
    model whose shape is unknown offline."""
    space = plan.space
    rows, notes = [], []
    for base in space.base_models:
        own = space.resources_for(base.name)
        if own.gpus_per_worker == 0 or base.source == EMBEDDED_TINY:
            continue
        arch, reason = architecture(base.source)
        if arch is None:
            notes.append(f"no memory estimate for {base.name}: {reason}")
            continue
        variants = [(own, True)] + [(replace_resources(own, strategy, workers), False)
                                    for strategy, workers in ALTERNATIVES
                                    if (strategy, workers) != (own.strategy, own.workers_per_trial)]
        for resources, declared in variants:
            batch, length = _largest_step(space, base.name, resources.workers_per_trial)
            m = per_gpu_memory(arch, resources, batch, length)
            rows.append(MemoryRow(base.name, resources.strategy, resources.workers_per_trial, resources.precision,
                                  resources.activation_checkpointing, resources.cpu_offload, declared,
                                  int(m["batch_per_gpu"]), length, m["parameters"] / GB, m["gradients"] / GB,
                                  m["optimizer"] / GB, m["activations"] / GB, m["total"] / GB, m["host"] / GB,
                                  {str(size): m["total"] <= size * GB for size in GPU_SIZES_GB}))
    return rows, notes


def replace_resources(resources: Resources, strategy: str, workers: int) -> Resources:
    """A what-if: the same precision and checkpointing under another strategy (offload only under FSDP)."""
    return resources.model_copy(update={"strategy": strategy, "workers_per_trial": workers,
                                        "cpu_offload": resources.cpu_offload and strategy == "fsdp"})


__all__ = ["ASSUMPTIONS", "Architecture", "GPU_SIZES_GB", "KNOWN_ARCHITECTURES", "MemoryRow", "architecture",
           "memory_rows", "per_gpu_memory"]
