"""Base models from the Hugging Face hub: which sources are hub ids, and downloading one for offline use."""

from __future__ import annotations

from pathlib import Path

from xgrid.config import EMBEDDED_TINY

# Weight files come in several formats: fetch one. Everything else a tokenizer or config needs is small.
MODEL_SMALL_FILES = ["*.json", "*.model", "*.txt", "*.tiktoken", "*.py"]


def is_hub_id(source: str) -> bool:
    """Neither the embedded tiny model (built, never downloaded) nor an existing local folder."""
    return source != EMBEDDED_TINY and not Path(source).expanduser().exists()


def model_patterns(files: list[str]) -> list[str]:
    if any(f.endswith(".safetensors") for f in files):
        return MODEL_SMALL_FILES + ["*.safetensors"]
    return MODEL_SMALL_FILES + ["*.bin"]


def fetch_model(repo_id: str, cache_dir: str | None) -> str:
    import huggingface_hub

    files = huggingface_hub.HfApi().list_repo_files(repo_id)
    return huggingface_hub.snapshot_download(repo_id, allow_patterns=model_patterns(files), cache_dir=cache_dir)
