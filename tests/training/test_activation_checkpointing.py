"""`resources.activation_checkpointing` in a single process: the encoder's blocks are recomputed in backward (a
hook inside a block sees a second forward per training step), and the phase gives the same results as without it
(recomputation is the same arithmetic). An encoder that cannot checkpoint is refused by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xgrid.training.context import LocalContext, enable_activation_checkpointing
from xgrid.training.phase import Hparams, PhaseRequest, run_phase


class CountingContext(LocalContext):
    """Counts the forwards of the first block's attention in training mode."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.training_forwards = 0

    def wrap(self, model):
        model = super().wrap(model)
        layer = model.encoder.encoder.layer[0].attention
        layer.register_forward_hook(lambda module, *_: setattr(self, "training_forwards",
                                                               self.training_forwards + module.training))
        return model


def test_the_blocks_are_recomputed_and_the_results_do_not_change(tiny_model, registry):
    task = registry.get("mb_udpos")
    request = PhaseRequest(tiny_model, (task,), Hparams(0.003, epochs=2, max_length=48, batch_size=16,
                                                        max_train_examples=64, max_eval_examples=20), 0, eval_task=task)
    plain, checkpointed = CountingContext(), CountingContext(activation_checkpointing=True)
    without, with_checkpointing = run_phase(request, plain), run_phase(request, checkpointed)
    steps = 2 * 64 // 16
    assert plain.training_forwards == steps and checkpointed.training_forwards == 2 * steps
    assert with_checkpointing.final == without.final
    for a, b in zip(with_checkpointing.history, without.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)


def test_an_encoder_that_cannot_checkpoint_is_named():
    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(2, 2)

    with pytest.raises(ValueError, match="resources.activation_checkpointing: Linear does not support"):
        enable_activation_checkpointing(Plain())


def test_a_bf16_stage1_encoder_is_stored_in_bf16_and_loads_back_in_fp32(tiny_model, registry, tmp_path):
    """Issue 13: stage-1 checkpoints in the training dtype (bf16 autocast runs on CPU too, so the path is tested
    here); the next stage reads them into fp32 master weights."""
    from safetensors import safe_open

    from xgrid.models.loading import load_encoder

    task = registry.get("mb_chunk")
    for precision in ("bf16", "fp32"):
        out = tmp_path / precision
        run_phase(PhaseRequest(tiny_model, (task,), Hparams(0.003, epochs=1, max_length=32, max_train_examples=32,
                                                            max_eval_examples=16, precision=precision), 0,
                               output_dir=str(out)))
        with safe_open(str(out / "model.safetensors"), "pt") as f:
            dtypes = {str(f.get_tensor(k).dtype) for k in f.keys()}
        assert dtypes == {"torch.bfloat16" if precision == "bf16" else "torch.float32"}, (precision, dtypes)
        assert {p.dtype for p in load_encoder(out).parameters()} == {torch.float32}


def test_bf16_gives_its_own_stage1_keys_and_cell_ids(registry):
    from xgrid.config import parse_space
    from xgrid.planning.plan import build_plan

    base = {"name": "p", "base_models": [{"name": "m", "source": "FacebookAI/xlm-roberta-large"}],
            "intermediates": ["none", "mnli"], "targets": ["xnli"], "seeds": [0],
            "target_training": {"learning_rate": 1e-5}, "resources": {"gpus_per_worker": 1}}
    fp32 = build_plan(parse_space(base, registry), registry)
    bf16 = build_plan(parse_space(base | {"resources": {"gpus_per_worker": 1, "precision": "bf16"}}, registry),
                      registry)
    assert {j.key for j in fp32.trained_jobs}.isdisjoint(j.key for j in bf16.trained_jobs)
    assert {c.id for c in fp32.cells}.isdisjoint(c.id for c in bf16.cells)
