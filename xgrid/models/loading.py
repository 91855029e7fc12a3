"""Load any encoder and its tokenizer, from a hub id or a local folder, through the Auto* classes.

Encoder-decoder checkpoints (mT5) contribute only their encoder (`T5EncoderModel`). Pooling layers are not
built: every format has its own head on the hidden states. Families: XLM-R base/large (`xlm-roberta`), XLM-R
XL/XXL (`xlm-roberta-xl`: `XLMRobertaXLModel`), mBERT (`bert`), mT5 (`mt5`/`t5`/`umt5`, encoder only). Formats
read the hidden size from `config.hidden_size`, or `config.d_model` for T5-style configs. T5-family weights
overflow in float16 (NaN activations): load them in float32 or bfloat16, and train with bf16 autocast on GPUs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where a model is built: checking a source (pre-flight) needs none
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


def load_encoder(source: str | Path, dtype: torch.dtype | None = None, empty: bool = False) -> torch.nn.Module:
    """The encoder with its weights; `empty`: its shape only, on the meta device (no weights read or memory
    allocated), for an FSDP rank that receives its shards from rank 0 (`ray_context.shard_loaded_once`)."""
    import torch
    import transformers
    from transformers import AutoConfig, AutoModel

    quiet_transformers()
    config = AutoConfig.from_pretrained(str(source))
    kwargs: dict[str, Any] = {"dtype": dtype or torch.float32}
    class_name = ENCODER_ONLY_CLASSES.get(config.model_type)
    if class_name and dtype == torch.float16:
        raise ValueError(f"{source}: {config.model_type} encoders overflow in float16 (NaN activations); "
                         "use bfloat16 on GPUs (precision: bf16) or float32")
    if config.model_type in POOLER_FAMILIES:
        kwargs["add_pooling_layer"] = False
    model_class = getattr(transformers, class_name) if class_name else AutoModel
    if empty:
        with torch.device("meta"):
            return model_class(config) if class_name else AutoModel.from_config(config, **kwargs)
    return model_class.from_pretrained(str(source), **kwargs)


# --- checking a source before a run (pre-flight) ----------------------------------------------------------------
# A hub id is `name` or `owner/name`; anything else (a leading / . ~, more than one /) can only be a folder.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth")


@dataclass(frozen=True)
class ModelCheck:
    """What pre-flight learns of a base model source without building it: its depth (for `retrieval.layer`),
    and what is wrong, if anything. `absent`: the model is not on this machine (a folder or hub cache entry
    that may exist where the run happens), as opposed to one that is here and broken."""

    layers: int | None = None
    problem: str | None = None
    absent: bool = False


def check_model(source: str) -> ModelCheck:
    """Load a source's config and tokenizer from disk only (a folder, or the local Hugging Face cache for a hub
    id; never the network) and check what a run needs: a config, weights, a fast tokenizer. Not for the
    embedded tiny model: it is built from a config object where it is used (its depth is `TinyModelConfig`'s)."""
    path = Path(source).expanduser()
    if path.exists() and not path.is_dir():
        return ModelCheck(problem=f"{source!r} is a file, not a model folder")
    if not path.exists() and not HUB_ID.match(source):
        return ModelCheck(problem=f"folder {source!r} does not exist on this machine", absent=True)
    if path.is_dir():
        return _check_folder(path, source)
    return _check_cached(source)


def _check_folder(path: Path, source: str) -> ModelCheck:
    from transformers import AutoConfig

    quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    except Exception as err:  # noqa: BLE001 - whatever transformers says, the user gets one line
        return ModelCheck(problem=f"folder {source!r} is not a model (its config does not load: {_first(err)})")
    if not _has_weights(path):
        return ModelCheck(problem=f"folder {source!r} has a config but no weights ({', '.join(WEIGHT_FILES)})")
    return _with_tokenizer(str(path), f"folder {source!r}", config, absent_if_missing=False)


def _check_cached(repo: str) -> ModelCheck:
    import huggingface_hub
    from transformers import AutoConfig

    quiet_transformers()
    missing = (f"hub model {repo!r} is neither a folder on this machine nor in the local Hugging Face cache "
               f"({huggingface_hub.constants.HF_HUB_CACHE}); run `xgrid prefetch SPACE` on a machine with internet "
               f"and share its HF_HOME, or name a local folder")
    try:
        config = AutoConfig.from_pretrained(repo, local_files_only=True)
        snapshot = Path(huggingface_hub.snapshot_download(repo, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (or only partly): the same advice either way
        return ModelCheck(problem=missing, absent=True)
    if not _has_weights(snapshot):
        return ModelCheck(problem=f"hub model {repo!r}: the local Hugging Face cache has its config but no weights; "
                                  f"run `xgrid prefetch SPACE` on a machine with internet", absent=True)
    return _with_tokenizer(repo, f"hub model {repo!r}", config, absent_if_missing=True)


def _with_tokenizer(source: str, what: str, config: Any, absent_if_missing: bool) -> ModelCheck:
    from transformers import AutoTokenizer

    layers = getattr(config, "num_hidden_layers", None)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except Exception as err:  # noqa: BLE001
        return ModelCheck(layers, f"{what}: its tokenizer does not load ({_first(err)})", absent_if_missing)
    if not getattr(tokenizer, "is_fast", False):
        return ModelCheck(layers, f"{what} has only a slow tokenizer ({type(tokenizer).__name__}); xgrid needs a fast "
                                  f"one (a tokenizer.json: offsets and word ids for QA and tagging)")
    return ModelCheck(layers)


def _has_weights(folder: Path) -> bool:
    return any(any(folder.glob(pattern)) for pattern in WEIGHT_FILES)


def _first(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0][:200]}" if lines else type(err).__name__
