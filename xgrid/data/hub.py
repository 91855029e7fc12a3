"""Data sources that read Hugging Face hub datasets (through `datasets.load_dataset`).

Loading is offline-first. Every hub read first runs with the hub switched off, so a dataset already in the
`datasets` cache is used without a single request; only when that fails, and `HF_DATASETS_OFFLINE` /
`HF_HUB_OFFLINE` is not set, is the hub asked. A dataset that is neither cached nor reachable raises one
`DatasetNotCachedError` naming the dataset, config and split and the command that pre-downloads a space's data
(`xgrid prefetch SPACE`). It subclasses `DatasetUnavailableError`, the error of any data that cannot be had on
this machine (local copies and the local corpora of `xgrid.data.local_corpora` raise its other subclass).
With `local_paths.<task>` set, every part the task reads comes from that local copy instead
(`xgrid.data.local_copy`, what `xgrid prefetch SPACE --to DIR` writes) and the hub is never asked.

A source maps a (language, split role) to one or more `HubPart`s (dataset id, config, split, revision), loads
them (concatenating several, as ANLI's three rounds), applies an optional row filter (SNLI's unlabeled pairs,
TyDiQA's non-English training examples) and an optional transform (documented per entry), and returns rows in
the schema of the hub dataset. The format featurizes those rows; nothing here tokenizes.

Tokenized features are cached by `datasets` itself: rows loaded from the hub cache are memory-mapped Arrow files
with a deterministic fingerprint, and the formats' `Dataset.map` then writes its result beside them under a
fingerprint of (input fingerprint, mapping function and everything it closes over: tokenizer, max length,
label names), so a second featurization with the same tokenizer and max length is read back instead of
recomputed (`tests/tasks/test_hub_loading.py::test_featurized_rows_are_cached_by_datasets` pins this).
Tests point the source at fixture files by replacing `datasets.load_dataset` (the one call that touches the
hub); everything after that call is the code real data goes through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Sequence

import datasets

from xgrid.data.local_copy import read_copy
from xgrid.data.sources import (DatasetUnavailableError, LoadContext, MissingSplitError, SplitRole, TaskInfo, cap,
                                hub_switched_off)

PREFETCH_COMMAND = "xgrid prefetch SPACE"
PROBE_TIMEOUT_S = 10.0


# --- errors ----------------------------------------------------------------------------------------------------
class DatasetNotCachedError(DatasetUnavailableError):
    """Built from (part, reason); a pickled copy (Ray) is rebuilt from its message alone."""

    def __init__(self, part: "HubPart | str", reason: str | None = None):
        if reason is None and isinstance(part, str):
            super().__init__(part)
            return
        super().__init__(
            f"dataset {part.path!r} (config {part.config_label}, split {part.split!r}) is neither in the local "
            f"Hugging Face cache nor reachable ({reason}). On a machine with internet run `{PREFETCH_COMMAND}` "
            f"(SPACE: your search-space YAML) to download every dataset and model the space needs, then use "
            f"the same HF_HOME (default ~/.cache/huggingface) here, or `{PREFETCH_COMMAND} --to DIR` to write "
            f"copies that `local_paths` names.")


# --- one hub read ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HubPart:
    """One `datasets.load_dataset(path, name, split=..., revision=..., data_files=...)` call."""

    path: str
    name: str | None = None
    split: str = "train"
    revision: str | None = None
    data_files: str | None = None  # a file pattern inside the repo for this split (refs/convert/parquet layouts)

    @property
    def config_label(self) -> str:
        label = repr(self.name) if self.name else (repr(self.data_files) if self.data_files else "default")
        return label + (f" @ {self.revision}" if self.revision else "")

    def kwargs(self, ctx: LoadContext) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"split": self.split}
        if self.name is not None:
            kwargs["name"] = self.name
        if self.revision is not None:
            kwargs["revision"] = self.revision
        if self.data_files is not None:
            kwargs["data_files"] = {self.split: self.data_files}
        if ctx.cache_dir is not None:
            kwargs["cache_dir"] = ctx.cache_dir
        return kwargs


def hub_offline() -> bool:
    """True when the user switched the hub off (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE)."""
    return bool(datasets.config.HF_HUB_OFFLINE)


def hub_endpoint() -> str:
    """The hub xgrid talks to: HF_ENDPOINT, or huggingface.co."""
    import huggingface_hub.constants as hub_constants

    return hub_constants.ENDPOINT


def probe_hub(repo: str, repo_type: str = "dataset", endpoint: str | None = None,
              timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """One request for `repo`'s metadata. None when the hub answers at all (a 404 or 401 is an answer: the hub
    is there); otherwise why it cannot be reached (refused, timed out, no route, no name resolution)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=endpoint or hub_endpoint())
    info = api.dataset_info if repo_type == "dataset" else api.model_info
    try:
        info(repo, timeout=timeout)
    except HfHubHTTPError:
        return None
    except Exception as err:  # noqa: BLE001 - any other failure means no answer
        return _first_line(err)
    return None


_CONNECTION_ERRORS = {"ConnectionError", "TimeoutError", "TransportError", "NetworkError", "ConnectError",
                      "ConnectTimeout", "ReadTimeout", "Timeout", "ProxyError", "LocalEntryNotFoundError"}


def is_connection_error(err: BaseException | None) -> bool:
    """Whether a failed read failed on the way to the hub (as opposed to the data: a bad config, a gated repo)."""
    seen = 0
    while err is not None and seen < 8:
        if any(c.__name__ in _CONNECTION_ERRORS for c in type(err).__mro__) or "Couldn't reach" in str(err):
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


def _missing_split(err: Exception) -> bool:
    return isinstance(err, ValueError) and ("Unknown split" in str(err) or "Bad split" in str(err))


def load_part(part: HubPart, ctx: LoadContext, allow_network: bool = True) -> datasets.Dataset:
    """Read one split: from the cache without any request first; then, if allowed and not offline, the hub."""
    kwargs = part.kwargs(ctx)
    try:
        with hub_switched_off():
            return datasets.load_dataset(part.path, **kwargs)
    except Exception as err:  # noqa: BLE001 - any failure of the cache-only read means "not cached"
        if _missing_split(err):
            raise MissingSplitError(f"{part.path} ({part.config_label}) has no split {part.split!r}") from None
        cached_error = err
    if hub_offline() or not allow_network:
        raise DatasetNotCachedError(part, f"offline mode; cache lookup said: {_first_line(cached_error)}") from None
    try:
        return datasets.load_dataset(part.path, **kwargs)
    except Exception as err:  # noqa: BLE001
        if _missing_split(err):
            raise MissingSplitError(f"{part.path} ({part.config_label}) has no split {part.split!r}") from None
        raise DatasetNotCachedError(part, _first_line(err)) from err


def read_part(part: HubPart, task: TaskInfo, ctx: LoadContext) -> datasets.Dataset:
    """One part as a task reads it: from the task's local copy when `local_paths.<task>` is set (never the hub
    then), else from the cache or the hub (`load_part`)."""
    root = ctx.local_paths.get(task.name)
    if root:
        return read_copy(part, task.name, root, ctx.cache_dir)
    return load_part(part, ctx)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


# --- row filters and transforms (picklable objects: `datasets` fingerprints them and Ray ships them) -----------
@dataclass(frozen=True)
class DropLabel:
    """Drop rows whose `column` equals `value` (SNLI's pairs without a gold label carry -1)."""

    column: str
    value: Any

    def __call__(self, row: dict[str, Any]) -> bool:
        return row[self.column] != self.value


@dataclass(frozen=True)
class IdPrefix:
    """Keep rows whose id starts with `<prefix>-` (TyDiQA ids start with the language name: `english-...`)."""

    prefix: str
    column: str = "id"

    def __call__(self, row: dict[str, Any]) -> bool:
        return row[self.column].startswith(self.prefix + "-")


UD_RELATIONS = ("acl", "advcl", "advmod", "amod", "appos", "aux", "case", "cc", "ccomp", "clf", "compound", "conj",
                "cop", "csubj", "dep", "det", "discourse", "dislocated", "expl", "fixed", "flat", "goeswith", "iobj",
                "list", "mark", "nmod", "nsubj", "nummod", "obj", "obl", "orphan", "parataxis", "punct",
                "reparandum", "root", "vocative", "xcomp")
# UD's 37 universal relations plus "_" (multiword-token ranges, which carry no relation).
DEPREL_LABELS = UD_RELATIONS + ("_",)
XTREME_UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
               "SCONJ", "SYM", "VERB", "X")


@dataclass(frozen=True)
class StripDeprelSubtypes:
    """`nmod:poss` -> `nmod`: UD's language-specific subtypes are an open set; the universal relation is not."""

    column: str = "deprel"

    def features(self, features: datasets.Features) -> datasets.Features:
        return features

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {self.column: [[str(r).split(":")[0] for r in rels] for rels in batch[self.column]]}


@dataclass(frozen=True)
class UdToXtremePos:
    """`universal_dependencies` rows (tokens, upos) -> XTREME's udpos schema (tokens, pos_tags with XTREME's label
    order). Multiword-token ranges (upos "_") are dropped, keeping the syntactic words as XTREME does."""

    def features(self, features: datasets.Features) -> datasets.Features:
        return datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "pos_tags": datasets.Sequence(datasets.ClassLabel(names=list(XTREME_UPOS)))})

    def __call__(self, batch: dict[str, list[Any]], upos_names: Sequence[str] = ()) -> dict[str, list[Any]]:
        tokens, tags = [], []
        for words, upos in zip(batch["tokens"], batch["upos"]):
            names = [upos_names[u] if isinstance(u, int) and upos_names else str(u) for u in upos]
            kept = [(w, XTREME_UPOS.index(n)) for w, n in zip(words, names) if n in XTREME_UPOS]
            tokens.append([w for w, _ in kept])
            tags.append([t for _, t in kept])
        return {"tokens": tokens, "pos_tags": tags}


@dataclass(frozen=True)
class RenameColumns:
    """Give a second hub dataset the column names of the task's main one (Tatoeba languages XTREME lacks)."""

    mapping: tuple[tuple[str, str], ...]

    def features(self, features: datasets.Features) -> datasets.Features:
        names = dict(self.mapping)
        return datasets.Features({names.get(k, k): v for k, v in features.items()})

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        names = dict(self.mapping)
        return {names.get(k, k): v for k, v in batch.items()}


def _apply_transform(dataset: datasets.Dataset, transform: Any) -> datasets.Dataset:
    if isinstance(transform, UdToXtremePos):
        upos = dataset.features["upos"]
        names = list(getattr(getattr(upos, "feature", upos), "names", []) or [])
        return dataset.map(transform, batched=True, fn_kwargs={"upos_names": names},
                           remove_columns=dataset.column_names, features=transform.features(dataset.features))
    if isinstance(transform, RenameColumns):
        return dataset.rename_columns({k: v for k, v in transform.mapping if k in dataset.column_names})
    return dataset.map(transform, batched=True, features=transform.features(dataset.features))


# --- the hub source --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HubSource:
    """A hub dataset with one config per language (or one config for all).

    `config` is a template: "{code}" becomes the language's code (`codes[language]`, default the language
    itself), e.g. "PAN-X.{code}", "udpos.{code}" with codes {"en": "English"}. `splits` maps a split role to the
    hub's split name(s) (several are concatenated); a role not listed does not exist (MissingSplitError).
    `languages_for` restricts a role to some languages (targets: English training data only).
    `overrides` sends one (language, role) to another source: XQuAD's English dev is SQuAD v1.1's dev.
    `data_files` (with `revision`) reads a pattern instead of a config, "{config}" and "{split}" filled in.
    """

    path: str
    config: str | None = None
    codes: Mapping[str, str] = field(default_factory=dict)
    splits: Mapping[str, str | tuple[str, ...]] = field(
        default_factory=lambda: {"train": "train", "dev": "validation", "test": "test"})
    languages_for: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    overrides: Mapping[tuple[str, str], Any] = field(default_factory=dict)
    revision: str | None = None
    data_files: str | None = None
    row_filter: Any = None  # row -> bool
    transform: Any = None  # batched row mapping; see the classes above
    seeded_by_microbench: ClassVar[bool] = False
    cheap_to_load: ClassVar[bool] = False
    local_data: ClassVar[str | None] = "copy"  # local_paths.<task>: a local copy (xgrid.data.local_copy)

    def code(self, language: str) -> str:
        return self.codes.get(language, language)

    def configs(self, language: str) -> list[str | None]:
        if self.config is None:
            return [None]
        code = self.code(language)
        # A language may span several configs ("lt": lt_alksnis + lt_hse): codes joined with "+".
        return [self.config.format(code=c) for c in code.split("+")]

    def delegate(self, language: str, role: str) -> Any:
        return self.overrides.get((language, role)) or self.overrides.get(("*", role))

    def parts(self, task: TaskInfo, language: str, role: SplitRole) -> list[HubPart]:
        """The hub reads behind (language, role); MissingSplitError when there are none."""
        if (other := self.delegate(language, role)) is not None:
            return other.parts(task, language, role)
        if role not in self.splits or language not in self.languages_for.get(role, (language,)):
            raise MissingSplitError(f"task {task.name!r} has no {role!r} data for language {language!r}")
        split = self.splits[role]
        names = (split,) if isinstance(split, str) else tuple(split)
        out = []
        for config in self.configs(language):
            for name in names:
                if self.data_files:
                    out.append(HubPart(self.path, None, name, self.revision,
                                       self.data_files.format(config=config, split=name)))
                else:
                    out.append(HubPart(self.path, config, name, self.revision))
        return out

    def load(self, task: TaskInfo, language: str, role: SplitRole, ctx: LoadContext) -> datasets.Dataset:
        if (other := self.delegate(language, role)) is not None:
            return other.load(task, language, role, ctx)
        pieces = []
        for part in self.parts(task, language, role):
            try:
                pieces.append(read_part(part, task, ctx))
            except MissingSplitError:
                if len(self.configs(language)) == 1:  # a language spread over treebanks may lack one split
                    raise
        if not pieces:
            raise MissingSplitError(f"task {task.name!r} has no {role!r} data for language {language!r}")
        dataset = pieces[0] if len(pieces) == 1 else datasets.concatenate_datasets(pieces)
        if self.row_filter is not None:
            dataset = dataset.filter(self.row_filter)
        if self.transform is not None:
            dataset = _apply_transform(dataset, self.transform)
        return cap(dataset, ctx.max_examples)

    def describe(self) -> str:
        where = (self.config or "default").replace("{code}", "<lang>")
        return f"hub:{self.path} ({where})"


@dataclass(frozen=True)
class TydiqaSource(HubSource):
    """TyDiQA-GoldP from `google/xtreme` `tydiqa` (all languages in one config; ids start with the language name).

    English training data only (ids `english-...`; the multilingual training file must never be used zero-shot).
    TyDiQA-GoldP has no public test set: XTREME evaluates on the dev set, so each language's dev examples are the
    test role. For model selection, every `holdout`-th English training example (ordered as on the hub) is held
    out as the English dev set and not trained on: selecting on the evaluation set would not be zero-shot.
    """

    names: Mapping[str, str] = field(default_factory=dict)  # language -> id prefix
    holdout: int = 10

    def parts(self, task, language, role):
        if role == "test":
            return [HubPart(self.path, self.config, "validation")]
        if language != "en":
            raise MissingSplitError(f"task {task.name!r} has {role!r} data only for English")
        return [HubPart(self.path, self.config, "train")]

    def load(self, task, language, role, ctx):
        (part,) = self.parts(task, language, role)
        dataset = read_part(part, task, ctx).filter(IdPrefix(self.names[language]))
        if role != "test":
            keep = [i for i in range(len(dataset)) if (i % self.holdout == 0) == (role == "dev")]
            dataset = dataset.select(keep)
        return cap(dataset, ctx.max_examples)


def hub_parts(source: Any, task: TaskInfo, language: str, role: SplitRole) -> list[HubPart]:
    """The hub reads a (task, language, role) needs, for prefetching; [] for local-only sources."""
    parts = getattr(source, "parts", None)
    if parts is None:
        return []
    try:
        return parts(task, language, role)
    except MissingSplitError:
        return []


__all__ = [
    "DEPREL_LABELS", "DatasetNotCachedError", "DatasetUnavailableError", "DropLabel", "HubPart", "HubSource",
    "IdPrefix", "PREFETCH_COMMAND", "RenameColumns", "StripDeprelSubtypes", "TydiqaSource", "UdToXtremePos",
    "hub_endpoint", "hub_offline", "hub_parts", "is_connection_error", "load_part", "probe_hub", "read_part",
]
