"""Load any encoder and its tokenizer, from a hub id or a local folder, through the Auto* classes.

Encoder-decoder checkpoints (mT5) contribute only their encoder (`T5EncoderModel`). Pooling layers are not
built: every format has its own head on the hidden states. Families: XLM-R base/large (`xlm-roberta`), XLM-R
XL/XXL (`xlm-roberta-xl`: `XLMRobertaXLModel`), mBERT (`bert`), mT5 (`mt5`/`t5`/`umt5`, encoder only). Formats
read the hidden size from `config.hidden_size`, or `config.d_model` for T5-style configs. T5-family weights
overflow in float16 (NaN activations): load them in float32 or bfloat16, and train with bf16 autocast on GPUs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

# model_type -> how to build just the encoder. Everything else goes through AutoModel.
ENCODER_ONLY_CLASSES = {"t5": "T5EncoderModel", "mt5": "T5EncoderModel", "umt5": "UMT5EncoderModel"}
# Families whose AutoModel class takes add_pooling_layer (BERT-style poolers we never use).
POOLER_FAMILIES = {"xlm-roberta", "xlm-roberta-xl", "roberta", "bert"}


def quiet_transformers() -> None:
    """Per-call progress bars and load reports drown a grid's output; errors still show."""
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def load_tokenizer(source: str | Path) -> Any:
    from transformers import AutoTokenizer

    quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{source}: xgrid needs a fast tokenizer (offsets and word ids for QA and tagging)")
    return tokenizer


def load_encoder(source: str | Path, dtype: torch.dtype | None = None) -> torch.nn.Module:
    import transformers
    from transformers import AutoConfig, AutoModel

    quiet_transformers()
    config = AutoConfig.from_pretrained(str(source))
    kwargs: dict[str, Any] = {"dtype": dtype or torch.float32}
    class_name = ENCODER_ONLY_CLASSES.get(config.model_type)
    if class_name and dtype == torch.float16:
        raise ValueError(f"{source}: {config.model_type} encoders overflow in float16 (NaN activations); "
                         "use bfloat16 on GPUs (precision: bf16) or float32")
    if class_name:
        return getattr(transformers, class_name).from_pretrained(str(source), **kwargs)
    if config.model_type in POOLER_FAMILIES:
        kwargs["add_pooling_layer"] = False
    return AutoModel.from_pretrained(str(source), **kwargs)
