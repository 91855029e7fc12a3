"""The TrainContext of a Ray Train worker: DDP through `ray.train.torch.prepare_model`, or FSDP2
(`torch.distributed.fsdp.fully_shard`, which also runs on CPU with gloo, so the path is tested here), and
reports through `ray.train.report` (Tune sees them through TuneReportCallback), with the per-epoch checkpoint when
`checkpointing` is on (rank 0's under DDP; under FSDP every rank's own part, which Train merges into one checkpoint):
Train keeps it in the run's storage and hands it back to the workers it restarts."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from xgrid.training.context import enable_activation_checkpointing, load_full_weights, save_full_weights, unwrap
from xgrid.training.shards import load_model_shards, resharded, save_model_shards


class RayTrainContext:
    """`activation_checkpointing`, `cpu_offload` and `precision` are the trial's `resources`: under FSDP2, bf16
    means a mixed-precision policy (bf16 compute and all-gathers, fp32 sharded master weights and gradient
    reduction) and `cpu_offload` FSDP2's CPUOffloadPolicy."""

    def __init__(self, strategy: str = "ddp", checkpointing: bool = False, activation_checkpointing: bool = False,
                 cpu_offload: bool = False, precision: str = "fp32"):
        import ray.train
        import ray.train.torch

        context = ray.train.get_context()
        self.rank = context.get_world_rank()
        self.world_size = context.get_world_size()
        self.device = ray.train.torch.get_device()
        self.strategy = strategy
        self.checkpointing = checkpointing
        self.activation_checkpointing = activation_checkpointing
        self.cpu_offload = cpu_offload
        self.precision = precision

    @property
    def loads_weights(self) -> bool:
        """Whether this rank reads the encoder's weights: under FSDP only rank 0 does, and sends each rank its
        shards (`shard_loaded_once`), so 8 ranks of XXL hold one full copy in host memory, not eight."""
        return self.strategy != "fsdp" or self.rank == 0

    def wrap(self, model):
        import ray.train.torch

        if self.activation_checkpointing:
            enable_activation_checkpointing(model)
        if self.strategy == "fsdp":
            return shard_loaded_once(model, self.device, self.precision, self.cpu_offload)
        # Several heads: each step trains only one of them, so DDP must tolerate parameters without grads.
        kwargs = {"find_unused_parameters": len(getattr(model, "heads", ())) > 1}
        return ray.train.torch.prepare_model(model, parallel_strategy_kwargs=kwargs)

    def loader(self, dataset, batch_size, shuffle, collate, seed):
        import ray.train.torch

        # `batch_size` is the global batch: each rank takes its share (the space checks that it splits evenly).
        loader = DataLoader(dataset, batch_size=per_rank_batch(batch_size, self.world_size), shuffle=shuffle,
                            collate_fn=collate,
                            generator=torch.Generator().manual_seed(seed))
        # Adds a DistributedSampler (each rank its own shard); batches are moved to the device by the loop.
        return ray.train.torch.prepare_data_loader(loader, add_dist_sampler=True, move_to_device=False)

    def set_epoch(self, loader, epoch):
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        elif loader.generator is not None:
            # One worker: Train adds no DistributedSampler. Reseeded per epoch as LocalContext does, so a one-worker
            # TorchTrainer trial draws the same batches as the same trial run inline (and gives the same result).
            loader.generator.manual_seed(loader.generator.initial_seed() + epoch)

    @property
    def sharded(self) -> bool:
        """Under FSDP each rank holds only its shards: it saves and reloads them itself (`shards`)."""
        return self.strategy == "fsdp"

    def save_weights(self, model, path):
        if self.sharded:
            save_model_shards(model, path)
        else:
            save_full_weights(model, path)

    def load_weights(self, model, path):
        if self.sharded:
            load_model_shards(model, path)
        else:
            load_full_weights(model, path)

    def full_state_dict(self, model):
        if self.sharded:
            return fsdp_full_state_dict(model)
        return {k: v.detach().to("cpu", copy=True) for k, v in unwrap(model).state_dict().items()}

    def all_gather(self, value):
        import torch.distributed as dist

        if self.world_size == 1:
            return [value]
        gathered: list = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def report(self, metrics, checkpoint_dir=None):
        import ray.train

        # Every rank reports (Train's report is a barrier); rank 0 passes the checkpoint, and under FSDP every rank
        # its own part of it (rank-named files, merged by Train into one folder).
        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)

    def latest_checkpoint(self):
        import ray.train

        return local_folder(ray.train.get_checkpoint())


def local_folder(checkpoint) -> str | None:
    """A Ray Checkpoint as a local folder to read: its own path on a local file system (no copy), else a download
    into a temporary folder (cloud storage)."""
    if checkpoint is None:
        return None
    import pyarrow.fs

    if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
        return checkpoint.path
    return checkpoint.to_directory()


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """One rank's share of a global batch (at least 1)."""
    return max(1, batch_size // max(1, world_size))


def fsdp_full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Collective: every rank calls it; rank 0 receives the full tensors on CPU, the others nothing."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(resharded(model), options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def shard_loaded_once(model: torch.nn.Module, device: torch.device, precision: str = "fp32",
                      cpu_offload: bool = False) -> torch.nn.Module:
    """Collective: FSDP2-shard `model`, whose weights only rank 0 holds (the other ranks built it on the meta
    device, its heads aside): every rank allocates its own shards, and rank 0's full state dict (parameters and
    persistent buffers) and its non-persistent buffers (position ids) are broadcast into them. Offloaded
    parameters stay in host memory: FSDP2 moves each block's to the GPU for its compute."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    on_meta = any(p.is_meta for p in model.parameters())
    full = {} if on_meta else model.state_dict()  # rank 0: its loaded weights, on the CPU where they were read
    home = torch.device("cpu") if cpu_offload else device
    if not on_meta:
        model = model.to(home)
    model = _fully_shard(model, precision=precision, cpu_offload=cpu_offload)
    if on_meta:
        model.to_empty(device=home)
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    for buffer in model.buffers():  # FSDP2 does not shard buffers: each rank keeps them whole
        dist.broadcast(buffer, src=0)
    return model


def fsdp_options(precision: str = "fp32", cpu_offload: bool = False) -> dict:
    """`fully_shard` keyword arguments for a trial's precision and offload."""
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy

    options: dict = {}
    if precision == "bf16":
        # Parameters all-gathered and computed in bf16 (half the traffic and the gathered memory of fp32); the
        # sharded master copy, the optimizer step and the gradient reduce-scatter stay fp32.
        options["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    if cpu_offload:
        options["offload_policy"] = CPUOffloadPolicy(pin_memory=torch.cuda.is_available())
    return options


def _fully_shard(model: torch.nn.Module, precision: str = "fp32", cpu_offload: bool = False) -> torch.nn.Module:
    """FSDP2: shard every transformer block (HF names them *Layer / *Block), then the whole model, so only one
    block's parameters are gathered at a time."""
    from torch.distributed.fsdp import fully_shard

    options = fsdp_options(precision, cpu_offload)
    for module in list(model.encoder.modules()):
        name = type(module).__name__
        if (name.endswith("Layer") or name.endswith("Block")) and module is not model.encoder:
            fully_shard(module, **options)
    fully_shard(model, **options)
    return model
