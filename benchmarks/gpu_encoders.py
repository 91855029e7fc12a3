"""bf16 training throughput, MFU and peak memory of XLM-R-Large- and XL-shaped encoders through xgrid's GPU path.

    python benchmarks/gpu_encoders.py [--models large xl] [--lengths 128 384] [--batch large:128=128 ...]
                                      [--steps 10] [--warmup 3] [--no-fsdp] [--no-activation-checkpointing]
                                      [--peak-tflops X]

Needs a CUDA device (it stops with one line when there is none). For each model and sequence length:

- the encoder is built from `transformers.XLMRobertaConfig` (Large: 24 layers, hidden 1024, 16 heads, ffn 4096,
  vocab 250002) or `XLMRobertaXLConfig` (XL: 36 layers, hidden 2560, 32 heads, ffn 10240, vocab 250880) with
  random weights, in fp32 on the GPU (xgrid loads encoders in float32), under a token-tagging head of xgrid's
  `tagging` format (17 labels, the UD-POS tag set's size) in a `PhaseModel`, as a phase builds it;
- activation checkpointing through `xgrid.training.context.enable_activation_checkpointing`, then FSDP2 through
  `xgrid.training.ray_context._fully_shard(model, "bf16")` (every block its own unit, the bf16
  MixedPrecisionPolicy) on a process group of one rank (nccl), as `RayTrainContext.wrap` does;
- the optimizer and schedule are `xgrid.training.phase._optimizer` (AdamW, linear warmup), and the steps are
  xgrid's own `_Trainer._train_epoch` (bf16 autocast, loss, backward, grad clipping, step, its per-step loss
  read-back) over synthetic batches of full-length rows (no padding: every token is real);
- warm-up steps are run first (one `_train_epoch` call), then `--steps` steps are timed between two
  `torch.cuda.synchronize()` calls.

FLOPs per step, for T = batch x length tokens, N = the parameters that take part in matmuls (every parameter but
the embedding tables: there is no LM head, so the 256M-parameter vocabulary costs a look-up, not a matmul), L
layers, hidden h, length s:

    model FLOPs    = T x (6 N + 12 L s h)        # 2N forward + 4N backward; attention scores and values
                                                   # (QK^T and AV: 4 L s h forward per token, x3 with backward)
    hardware FLOPs = model FLOPs + T x (2 N + 4 L s h)   with activation checkpointing (one more forward)

MFU = model FLOPs per second / the GPU's bf16 dense peak (PaLM's definition: recomputation is not useful work);
HFU = hardware FLOPs per second / the same peak. Peaks by device name are in PEAK_TFLOPS (dense, no sparsity);
--peak-tflops overrides. Goals (issue 14): MFU >= 45% for Large, >= 35% for XL with FSDP + activation
checkpointing.

Memory: `torch.cuda.max_memory_allocated()` over the warm-up and timed steps (weights, gradients, AdamW state,
activations) against `xgrid.planning.memory.per_gpu_memory` for the same architecture (its KNOWN_ARCHITECTURES
entry), resources (fsdp or ddp, 1 worker, bf16, activation checkpointing as run), batch and length: the dry run's
per-GPU total, which adds the allocator's slack and 1.5 GB of CUDA context the allocator does not see; the ratio
is measured / estimate (goal: within 20%). `max_memory_reserved` is printed too (the allocator's own footprint).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from types import SimpleNamespace

SHAPES = {
    # name: (config class, layers, hidden, heads, ffn, vocab, the dry run's architecture key)
    "large": ("XLMRobertaConfig", 24, 1024, 16, 4096, 250_002, "FacebookAI/xlm-roberta-large"),
    "xl": ("XLMRobertaXLConfig", 36, 2560, 32, 10240, 250_880, "facebook/xlm-roberta-xl"),
}
# Default per-GPU batches: ~16-18k tokens a step for Large, ~8-9k for XL (fills an 80 GB GPU sensibly with FSDP and
# activation checkpointing; raise them on a 141 GB H200 with --batch).
DEFAULT_BATCH = {("large", 128): 128, ("large", 384): 48, ("xl", 128): 64, ("xl", 384): 24}
TAGS = 17  # UD-POS's universal tag set
# bf16 dense peak TFLOPS (no sparsity), matched in order against torch.cuda.get_device_name().
PEAK_TFLOPS = (
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4), ("GH200", 989.4),
    ("H800", 989.4), ("H20", 148.0), ("B200", 2250.0), ("B100", 1750.0), ("A100", 312.0), ("A800", 312.0),
    ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0), ("V100", 0.0),
)
NO_CUDA = "gpu_encoders.py: no CUDA device (torch.cuda.is_available() is False): run it on a machine with an NVIDIA GPU"


@dataclass(frozen=True)
class Setting:
    model: str
    length: int
    batch: int
    fsdp: bool
    activation_checkpointing: bool


def peak_tflops(device_name: str) -> float | None:
    for key, value in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return value or None
    return None


def build_config(model: str, **overrides):
    """The transformers config of a shape in SHAPES (random weights are built from it)."""
    import transformers

    cls_name, layers, hidden, heads, ffn, vocab, _ = SHAPES[model]
    values = dict(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads, intermediate_size=ffn,
                  vocab_size=vocab, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1)
    return getattr(transformers, cls_name)(**(values | overrides))


def encoder_class(config):
    import transformers

    return transformers.XLMRobertaXLModel if config.model_type == "xlm-roberta-xl" else transformers.XLMRobertaModel


def matmul_params(model) -> int:
    """Parameters that take part in matmuls: all of them but the encoder's embeddings module (token, position and
    type tables; its LayerNorm's 2h too, a rounding error)."""
    embeddings = {id(p) for p in model.encoder.embeddings.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in embeddings)


def step_flops(n_params: int, layers: int, hidden: int, length: int, tokens: int,
               activation_checkpointing: bool) -> tuple[float, float]:
    """(model FLOPs, hardware FLOPs) of one training step: see the module docstring."""
    model = tokens * (6 * n_params + 12 * layers * length * hidden)
    recompute = tokens * (2 * n_params + 4 * layers * length * hidden) if activation_checkpointing else 0
    return float(model), float(model + recompute)


def parse_batches(entries: list[str]) -> dict[tuple[str, int], int]:
    """`large:128=96` entries over DEFAULT_BATCH."""
    batches = dict(DEFAULT_BATCH)
    for entry in entries:
        try:
            key, value = entry.split("=")
            model, length = key.split(":")
            if model not in SHAPES:
                raise ValueError
            batches[(model, int(length))] = int(value)
        except ValueError:
            raise SystemExit(f"--batch {entry!r}: expected MODEL:LENGTH=BATCH with MODEL one of {sorted(SHAPES)}")
    return batches


def settings_from(args) -> list[Setting]:
    batches = parse_batches(args.batch)
    out = []
    for model in args.models:
        for length in args.lengths:
            if length > 512:
                raise SystemExit(f"--lengths {length}: XLM-R has 512 positions")
            batch = batches.get((model, length)) or max(1, DEFAULT_BATCH[(model, 128)] * 128 // length)
            out.append(Setting(model, length, batch, not args.no_fsdp, not args.no_activation_checkpointing))
    return out


def init_process_group(device) -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        return
    store = tempfile.NamedTemporaryFile(prefix="xgrid-gpu-pg-", delete=False).name
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"file://{store}",
                            rank=0, world_size=1)


def build_model(setting: Setting, device, config=None):
    """The PhaseModel of a phase (encoder + tagging head), checkpointed and sharded as a GPU trial wraps it."""
    import torch

    from xgrid.formats.tagging import Tagging
    from xgrid.training.context import enable_activation_checkpointing
    from xgrid.training.phase import PhaseModel
    from xgrid.training.ray_context import _fully_shard

    config = config or build_config(setting.model)
    fmt = Tagging()
    torch.manual_seed(0)
    with torch.device(device):
        encoder = encoder_class(config)(config, add_pooling_layer=False)
        model = PhaseModel(encoder, {"tag": fmt.build_head(config.hidden_size, TAGS)}, {"tag": fmt})
    model.train()
    if setting.activation_checkpointing:
        enable_activation_checkpointing(model)
    n = matmul_params(model)
    if setting.fsdp:
        init_process_group(device)
        _fully_shard(model, "bf16" if device.type == "cuda" else "fp32")
    return model, config, n


class Batches:
    """A loader of synthetic full-length rows (input ids, mask of ones, tag labels), on the CPU as a loader
    yields them (the loop moves them to the device)."""

    def __init__(self, steps: int, batch: int, length: int, vocab: int, seed: int = 0):
        import torch

        generator = torch.Generator().manual_seed(seed)
        self.items = [{"input_ids": torch.randint(5, vocab, (batch, length), generator=generator),
                       "attention_mask": torch.ones(batch, length, dtype=torch.long),
                       "labels": torch.randint(0, TAGS, (batch, length), generator=generator)}
                      for _ in range(min(steps, 4))]
        self.steps = steps
        self.generator = None

    def __len__(self):
        return self.steps

    def __iter__(self):
        return (self.items[i % len(self.items)] for i in range(self.steps))


def train_steps(setting: Setting, device, steps: int, warmup: int, config=None) -> dict[str, float]:
    """Warm-up then `steps` timed steps through `_Trainer._train_epoch`; seconds, tokens/s, FLOPs and memory."""
    import random

    import torch

    from xgrid.training.phase import Hparams, _optimizer, _Trainer

    model, config, n = build_model(setting, device, config)
    hp = Hparams(learning_rate=1e-5, batch_size=setting.batch, max_length=setting.length,
                 precision="bf16" if device.type == "cuda" else "fp32")
    optimizer, scheduler = _optimizer(model, hp, warmup + steps)
    # The loop's own step code, on an object holding only what `_train_epoch` reads.
    loop = object.__new__(_Trainer)
    loop.req = SimpleNamespace(hparams=hp)
    loop.ctx = SimpleNamespace(device=device, set_epoch=lambda loader, epoch: None)
    loop.model = model
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    rng = random.Random(0)
    if warmup:
        _Trainer._train_epoch(loop, {"tag": Batches(warmup, setting.batch, setting.length, config.vocab_size, 1)},
                              optimizer, scheduler, rng, 1)
    sync()
    t0 = time.perf_counter()
    loss = _Trainer._train_epoch(loop, {"tag": Batches(steps, setting.batch, setting.length, config.vocab_size, 2)},
                                 optimizer, scheduler, rng, 2)
    sync()
    seconds = time.perf_counter() - t0
    tokens = setting.batch * setting.length
    model_flops, hardware_flops = step_flops(n, config.num_hidden_layers, config.hidden_size, setting.length,
                                             tokens, setting.activation_checkpointing)
    out = {"seconds_per_step": seconds / steps, "tokens_per_s": tokens * steps / seconds, "loss": loss,
           "matmul_params": n, "model_flops_per_s": model_flops * steps / seconds,
           "hardware_flops_per_s": hardware_flops * steps / seconds}
    if cuda:
        out |= {"max_allocated": torch.cuda.max_memory_allocated(), "max_reserved": torch.cuda.max_memory_reserved()}
    del model, optimizer, scheduler, loop
    if cuda:
        torch.cuda.empty_cache()
    return out


def estimate(setting: Setting) -> dict[str, float]:
    """The dry run's per-GPU memory for this setting (`xgrid.planning.memory.per_gpu_memory`)."""
    from xgrid.config import Resources
    from xgrid.planning.memory import KNOWN_ARCHITECTURES, per_gpu_memory

    resources = Resources(workers_per_trial=1, gpus_per_worker=1, precision="bf16",
                          strategy="fsdp" if setting.fsdp else "ddp",
                          activation_checkpointing=setting.activation_checkpointing)
    return per_gpu_memory(KNOWN_ARCHITECTURES[SHAPES[setting.model][6]], resources, setting.batch, setting.length)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", choices=sorted(SHAPES), default=["large", "xl"])
    p.add_argument("--lengths", nargs="+", type=int, default=[128, 384])
    p.add_argument("--batch", nargs="*", default=[], metavar="MODEL:LENGTH=BATCH",
                   help=f"per-GPU batch (defaults: {', '.join(f'{m}:{s}={b}' for (m, s), b in DEFAULT_BATCH.items())})")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--no-fsdp", action="store_true", help="the plain model on one GPU (strategy ddp, 1 worker)")
    p.add_argument("--no-activation-checkpointing", action="store_true")
    p.add_argument("--peak-tflops", type=float, help="the GPU's bf16 dense peak, if its name is not in the table")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit("--steps must be >= 1 and --warmup >= 0")
    settings = settings_from(args)
    import torch

    if not torch.cuda.is_available():
        raise SystemExit(NO_CUDA)
    torch.cuda.set_device(0)
    device = torch.device("cuda", 0)
    name = torch.cuda.get_device_name(0)
    peak = args.peak_tflops or peak_tflops(name)
    print(f"device {name}; bf16 dense peak {f'{peak:.0f} TFLOPS' if peak else 'unknown (pass --peak-tflops)'}; "
          f"torch {torch.__version__}, {torch.cuda.device_count()} GPU(s) visible, 1 used", flush=True)
    try:
        for setting in settings:
            what = (f"{setting.model} s={setting.length} b={setting.batch} "
                    f"{'fsdp2' if setting.fsdp else 'no fsdp'}{' + act. ckpt' if setting.activation_checkpointing else ''}")
            try:
                r = train_steps(setting, device, args.steps, args.warmup)
            except torch.cuda.OutOfMemoryError:
                print(f"{what}: out of memory (lower it with --batch {setting.model}:{setting.length}=N)", flush=True)
                torch.cuda.empty_cache()
                continue
            e = estimate(setting)
            mfu = f"MFU {100 * r['model_flops_per_s'] / (peak * 1e12):.1f}%, HFU " \
                  f"{100 * r['hardware_flops_per_s'] / (peak * 1e12):.1f}%" if peak else "MFU unknown"
            gb = 1e9
            print(f"{what}: {r['seconds_per_step'] * 1000:.0f} ms/step, {r['tokens_per_s']:,.0f} tokens/s, "
                  f"{r['model_flops_per_s'] / 1e12:.0f} model TFLOP/s, {mfu} (N = {r['matmul_params'] / 1e6:.0f}M "
                  f"matmul parameters); memory: max allocated {r['max_allocated'] / gb:.1f} GB, reserved "
                  f"{r['max_reserved'] / gb:.1f} GB, dry-run estimate {e['total'] / gb:.1f} GB (activations "
                  f"{e['activations'] / gb:.1f}); measured / estimate {r['max_allocated'] / e['total']:.2f} "
                  f"(reserved + 1.5 GB context / estimate {(r['max_reserved'] + 1.5 * gb) / e['total']:.2f})",
                  flush=True)
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
