"""benchmarks/gpu_encoders.py without a GPU: its refusal, its argument handling, its FLOPs formula, and the
training path it measures (xgrid's PhaseModel, activation checkpointing, FSDP2, `_Trainer._train_epoch`) run for
two steps of a tiny encoder on the CPU."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_encoders.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_encoders", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpu = _load()
TINY = dict(num_hidden_layers=2, hidden_size=8, num_attention_heads=2, intermediate_size=16, vocab_size=50,
            max_position_embeddings=40)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the script would run")
def test_refuses_without_cuda_in_one_line():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--models", "large", "--lengths", "128"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip() == gpu.NO_CUDA
    assert proc.stdout == ""


def test_arguments_are_checked_before_cuda():
    with pytest.raises(SystemExit, match="MODEL:LENGTH=BATCH"):
        gpu.main(["--batch", "huge:128=4"])
    with pytest.raises(SystemExit, match="512 positions"):
        gpu.main(["--lengths", "1024"])
    args = gpu.parser().parse_args(["--models", "xl", "--lengths", "128", "256", "--batch", "xl:256=7"])
    settings = gpu.settings_from(args)
    assert [(s.model, s.length, s.batch, s.fsdp, s.activation_checkpointing) for s in settings] == [
        ("xl", 128, gpu.DEFAULT_BATCH[("xl", 128)], True, True), ("xl", 256, 7, True, True)]


def test_shapes_are_the_published_ones():
    large, xl = gpu.build_config("large"), gpu.build_config("xl")
    assert (large.num_hidden_layers, large.hidden_size, large.num_attention_heads, large.intermediate_size,
            large.vocab_size, large.model_type) == (24, 1024, 16, 4096, 250_002, "xlm-roberta")
    assert (xl.num_hidden_layers, xl.hidden_size, xl.num_attention_heads, xl.intermediate_size,
            xl.vocab_size, xl.model_type) == (36, 2560, 32, 10240, 250_880, "xlm-roberta-xl")


def test_flops_formula_on_a_tiny_config():
    setting = gpu.Setting("large", 16, 3, fsdp=False, activation_checkpointing=True)
    model, config, n = gpu.build_model(setting, torch.device("cpu"), gpu.build_config("large", **TINY))
    h, f, layers = 8, 16, 2
    # Per layer: Q, K, V, O (weights and biases), the two feed-forward matrices, two LayerNorms; then the head.
    per_layer = 4 * (h * h + h) + (h * f + f) + (f * h + h) + 2 * 2 * h
    assert n == layers * per_layer + (h * gpu.TAGS + gpu.TAGS)
    tokens, s = 3 * 16, 16
    model_flops, hardware_flops = gpu.step_flops(n, layers, h, s, tokens, activation_checkpointing=True)
    assert model_flops == tokens * (6 * n + 12 * layers * s * h)
    assert hardware_flops == model_flops + tokens * (2 * n + 4 * layers * s * h)
    assert gpu.step_flops(n, layers, h, s, tokens, activation_checkpointing=False) == (model_flops, model_flops)


def test_peak_table_matches_device_names():
    assert gpu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert gpu.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu.peak_tflops("NVIDIA H200") == 989.4
    assert gpu.peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert gpu.peak_tflops("Some Future GPU") is None


def test_estimate_is_the_dry_runs():
    from xgrid.config import Resources
    from xgrid.planning.memory import KNOWN_ARCHITECTURES, per_gpu_memory

    setting = gpu.Setting("xl", 384, 24, fsdp=True, activation_checkpointing=True)
    expected = per_gpu_memory(KNOWN_ARCHITECTURES["facebook/xlm-roberta-xl"],
                              Resources(gpus_per_worker=1, precision="bf16", strategy="fsdp",
                                        activation_checkpointing=True), 24, 384)
    assert gpu.estimate(setting) == expected


def test_the_measured_path_trains_on_cpu(tmp_path):
    """Two steps of the script's own path (checkpointed, FSDP2 on a gloo group of one rank) on a tiny encoder, in
    a child process so that its process group does not outlive it."""
    code = f"""
import importlib.util, torch
spec = importlib.util.spec_from_file_location("gpu_encoders", {str(SCRIPT)!r})
import sys
gpu = importlib.util.module_from_spec(spec); sys.modules["gpu_encoders"] = gpu; spec.loader.exec_module(gpu)
torch.set_num_threads(1)
for fsdp in (False, True):
    setting = gpu.Setting("xl", 16, 4, fsdp=fsdp, activation_checkpointing=True)
    r = gpu.train_steps(setting, torch.device("cpu"), steps=2, warmup=1, config=gpu.build_config("xl", **{TINY!r}))
    assert r["tokens_per_s"] > 0 and r["loss"] > 0 and r["matmul_params"] > 0, r
    print("ok", fsdp)
import torch.distributed as dist
dist.destroy_process_group()
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["ok", "False", "ok", "True"]
