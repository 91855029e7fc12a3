"""The tiny model of the offline default: an XLM-R-shaped encoder built from a config object, with a
SentencePiece-style Unigram tokenizer trained on the embedded corpus. Both are written with
`save_pretrained`, so every later phase loads them through the same code as a hub id or a local folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R's ids 0..4


@dataclass(frozen=True)
class TinyModelConfig:
    vocab_size: int = 800
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 128
    max_positions: int = 512
    init_seed: int = 0

    def key(self, microbench_seed: int) -> str:
        payload = json.dumps({"model": asdict(self), "microbench_seed": microbench_seed, "v": 1}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def build_tokenizer(corpus: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(corpus, trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, unk_token="<unk>", show_progress=False))
    # RoBERTa's templates: <s> A </s> and <s> A </s></s> B </s>.
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        mask_token="<mask>", cls_token="<s>", sep_token="</s>", model_max_length=TinyModelConfig.max_positions - 2)


def build_tiny_model(out_dir: str | Path, corpus: list[str], config: TinyModelConfig = TinyModelConfig()) -> Path:
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from xgrid.models.loading import quiet_transformers

    quiet_transformers()
    tokenizer = build_tokenizer(corpus, config.vocab_size)
    model_config = XLMRobertaConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_positions + 2, type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(config.init_seed)
    model = XLMRobertaModel(model_config, add_pooling_layer=False)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def ensure_tiny_model(cache_root: str | Path, microbench_seed: int = 0,
                      config: TinyModelConfig = TinyModelConfig()) -> Path:
    """The tiny base model for this micro-benchmark seed, built once and kept content-addressed."""
    from xgrid.data import microbench

    final = Path(cache_root) / "base_models" / f"tiny-{config.key(microbench_seed)}"
    if (final / "config.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: concurrent builders (parallel trials) never see half a model.
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=final.parent))
    try:
        build_tiny_model(staging, microbench.corpus(seed=microbench_seed), config)
        try:
            os.rename(staging, final)
        except OSError:  # another process finished first; its copy is identical
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
