"""Tiny random encoders of every family xgrid loads, built from config objects and written with
`save_pretrained`, so tests load them through the same Auto* code as a hub id or a local folder."""

from __future__ import annotations

from pathlib import Path

import torch

from xgrid.models.tiny import build_tokenizer

CORPUS = [
    "The capital of France is Paris. It is a large city on the Seine.", "What is the capital of France?",
    "A man is playing a guitar on stage. A person plays music.", "Two dogs run across the park.",
    "Die Hauptstadt von Frankreich ist Paris. Wo schlief der Hund?", "Der Hund schlief im Garten.",
    "John Smith lives in London. Google opened an office in Paris.", "The cat sat on the mat.",
    "Ich habe Hunger. I am hungry. The house is red. Das Haus ist rot.", "She drinks coffee. Sie trinkt Kaffee.",
] * 3
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def _save(model, tokenizer, out: Path) -> Path:
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def xlmr(out: Path, xl: bool = False) -> Path:
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaXLConfig, XLMRobertaXLModel

    tok = build_tokenizer(CORPUS, 300)
    config_cls, model_cls = (XLMRobertaXLConfig, XLMRobertaXLModel) if xl else (XLMRobertaConfig, XLMRobertaModel)
    cfg = config_cls(vocab_size=len(tok), max_position_embeddings=130, type_vocab_size=1, pad_token_id=tok.pad_token_id,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **SMALL)
    torch.manual_seed(0)
    return _save(model_cls(cfg, add_pooling_layer=False), tok, out)


def mbert(out: Path) -> Path:
    from transformers import BertConfig, BertModel

    tok = build_tokenizer(CORPUS, 300)
    cfg = BertConfig(vocab_size=len(tok), max_position_embeddings=128, pad_token_id=tok.pad_token_id, **SMALL)
    torch.manual_seed(0)
    return _save(BertModel(cfg, add_pooling_layer=False), tok, out)


def t5_tokenizer(vocab_size: int = 300):
    """A Unigram tokenizer in T5's style: <pad>=0, </s>=1, <unk>=2, sequences end with </s>, no CLS token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"],
                                                            unk_token="<unk>", show_progress=False))
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", eos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                                   model_max_length=512)


def mt5(out: Path) -> Path:
    from transformers import MT5Config, MT5ForConditionalGeneration

    tok = t5_tokenizer()
    cfg = MT5Config(vocab_size=len(tok), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=1, num_heads=2,
                    pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    # A full encoder-decoder checkpoint, as google/mt5-* are: xgrid must keep only the encoder.
    return _save(MT5ForConditionalGeneration(cfg), tok, out)


BUILDERS = {"xlm-roberta": xlmr, "xlm-roberta-xl": lambda out: xlmr(out, xl=True), "bert": mbert, "mt5": mt5}
