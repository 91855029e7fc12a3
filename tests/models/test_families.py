"""Every encoder family xgrid supports, as a tiny random model saved with `save_pretrained`: it loads through the
Auto* classes with a fast tokenizer, trains a step on a classification, a span-QA and a tagging task, and pins
the `hidden_states` indexing convention retrieval relies on (index 0 = embeddings, None = last layer)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.models import tiny_families
from tests.tasks import hub_fake
from xgrid.formats.retrieval import RetrievalSettings, embed
from xgrid.metrics.retrieval import mean_pool
from xgrid.models.loading import load_encoder, load_tokenizer
from xgrid.tasks import LoadContext, default_registry
from xgrid.training.phase import Hparams, PhaseRequest, run_phase

REGISTRY = default_registry()
ENCODER_CLASSES = {"xlm-roberta": "XLMRobertaModel", "xlm-roberta-xl": "XLMRobertaXLModel", "bert": "BertModel",
                   "mt5": "T5EncoderModel"}
HP = Hparams(learning_rate=1e-3, epochs=1, batch_size=4, max_length=64, max_train_examples=8, max_eval_examples=8)


@pytest.fixture(scope="module", params=sorted(tiny_families.BUILDERS))
def family(request, tmp_path_factory):
    return request.param, str(tiny_families.BUILDERS[request.param](tmp_path_factory.mktemp(request.param)))


def test_family_loads_encoder_only_with_a_fast_tokenizer(family):
    name, source = family
    tokenizer, encoder = load_tokenizer(source), load_encoder(source)
    assert tokenizer.is_fast
    assert type(encoder).__name__ == ENCODER_CLASSES[name]
    hidden = getattr(encoder.config, "hidden_size", None) or encoder.config.d_model
    out = encoder(**tokenizer(["Paris is big."], return_tensors="pt"))
    assert out.last_hidden_state.shape[-1] == hidden


@pytest.mark.parametrize("target,train", [("xnli", "mnli"), ("xquad", "squad"), ("panx", "panx_en")])
def test_family_trains_and_scores_each_format(family, target, train, monkeypatch):
    hub_fake.install(monkeypatch)
    _, source = family
    task = REGISTRY.get(target)
    result = run_phase(PhaseRequest(encoder_source=source, train_tasks=(REGISTRY.get(train),), eval_task=task,
                                    hparams=HP, seed=0, eval_languages=("en", "de"), load=LoadContext()))
    for language in ("en", "de"):
        value = result.final["english_dev"][language][task.metric]
        assert 0.0 <= value <= 100.0 and not np.isnan(value)


def _embedding_layer_output(encoder, enc) -> torch.Tensor:
    if hasattr(encoder, "embeddings"):  # BERT / XLM-R: word + position (+ type) embeddings, LayerNorm
        return encoder.embeddings(input_ids=enc["input_ids"])
    return encoder.shared(enc["input_ids"])  # T5: the shared token embedding table


@torch.no_grad()
def test_hidden_states_index_zero_is_the_embedding_layer(family):
    _, source = family
    tokenizer, encoder = load_tokenizer(source), load_encoder(source).eval()
    texts = ["The capital of France is Paris.", "Two dogs run."]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    mask = enc["attention_mask"].numpy()
    layer0 = embed(encoder, tokenizer, texts, RetrievalSettings(layer=0))
    np.testing.assert_allclose(layer0, mean_pool(_embedding_layer_output(encoder, enc).numpy(), mask), atol=1e-5)
    last = embed(encoder, tokenizer, texts, RetrievalSettings(layer=None))
    out = encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    np.testing.assert_allclose(last, mean_pool(out.last_hidden_state.numpy(), mask), atol=1e-5)
    layers = encoder.config.num_hidden_layers if hasattr(encoder.config, "num_hidden_layers") else encoder.config.num_layers
    np.testing.assert_allclose(embed(encoder, tokenizer, texts, RetrievalSettings(layer=layers)), last, atol=1e-6)
    with pytest.raises(ValueError, match="0 = embeddings"):
        embed(encoder, tokenizer, texts, RetrievalSettings(layer=layers + 1))


def test_t5_encoders_refuse_float16(tmp_path):
    source = tiny_families.mt5(tmp_path / "mt5")
    with pytest.raises(ValueError, match="bfloat16"):
        load_encoder(source, dtype=torch.float16)
    assert next(load_encoder(source, dtype=torch.bfloat16).parameters()).dtype == torch.bfloat16
