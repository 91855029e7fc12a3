"""Data sources of the real tasks: Hugging Face hub datasets (through `datasets.load_dataset`) and the two
licensed / script-only corpora that only exist as local files (CCGbank, Mewsli-X).

Loading is offline-first. Every hub read first runs with the hub switched off, so a dataset already in the
`datasets` cache is used without a single request; only when that fails, and `HF_DATASETS_OFFLINE` /
`HF_HUB_OFFLINE` is not set, is the hub asked. A dataset that is neither cached nor reachable raises one
`DatasetNotCachedError` naming the dataset, config and split and the command that pre-downloads a space's data
(`xgrid prefetch SPACE`). Local corpora raise `LocalDataMissingError` naming the search-space option
(`local_paths.<task>`). Both subclass `DatasetUnavailableError`.

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

import contextlib
import glob
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import datasets

from xgrid.tasks.sources import cap
from xgrid.tasks.spec import LoadContext, MissingSplitError, SplitRole, TaskSpec

PREFETCH_COMMAND = "xgrid prefetch SPACE"


# --- errors ----------------------------------------------------------------------------------------------------
class DatasetUnavailableError(RuntimeError):
    """The data a task needs cannot be had on this machine (not cached and no network, or no local copy)."""


class DatasetNotCachedError(DatasetUnavailableError):
    def __init__(self, part: "HubPart", reason: str):
        self.part = part
        super().__init__(
            f"dataset {part.path!r} (config {part.config_label}, split {part.split!r}) is neither in the local "
            f"Hugging Face cache nor reachable ({reason}). On a machine with internet run `{PREFETCH_COMMAND}` "
            f"(SPACE: your search-space YAML) to download every dataset and model the space needs, then use "
            f"the same HF_HOME (default ~/.cache/huggingface) here.")


class LocalDataMissingError(DatasetUnavailableError):
    def __init__(self, task: str, what: str, path: str | None = None):
        self.task = task
        self.option = f"local_paths.{task}"
        where = (f"`{self.option}` is {path!r}, which does not hold it" if path
                 else f"set `{self.option}` in the search space")
        super().__init__(f"task {task!r} reads local data only ({what}): {where}")


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


@contextlib.contextmanager
def _hub_switched_off() -> Iterator[None]:
    """Run `datasets` as if HF_DATASETS_OFFLINE=1 were set: the cache is used and no request is made.
    (Module state: loads in one process are sequential in xgrid, so flipping it is safe here.)"""
    import huggingface_hub.constants as hub_constants

    saved = datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE, hub_constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def _missing_split(err: Exception) -> bool:
    return isinstance(err, ValueError) and ("Unknown split" in str(err) or "Bad split" in str(err))


def load_part(part: HubPart, ctx: LoadContext, allow_network: bool = True) -> datasets.Dataset:
    """Read one split: from the cache without any request first; then, if allowed and not offline, the hub."""
    kwargs = part.kwargs(ctx)
    try:
        with _hub_switched_off():
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

    def parts(self, task: TaskSpec, language: str, role: SplitRole) -> list[HubPart]:
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

    def load(self, task: TaskSpec, language: str, role: SplitRole, ctx: LoadContext) -> datasets.Dataset:
        if (other := self.delegate(language, role)) is not None:
            return other.load(task, language, role, ctx)
        pieces = []
        for part in self.parts(task, language, role):
            try:
                pieces.append(load_part(part, ctx))
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
        dataset = load_part(part, ctx).filter(IdPrefix(self.names[language]))
        if role != "test":
            keep = [i for i in range(len(dataset)) if (i % self.holdout == 0) == (role == "dev")]
            dataset = dataset.select(keep)
        return cap(dataset, ctx.max_examples)


# --- local corpora ---------------------------------------------------------------------------------------------
def local_path(task: TaskSpec, ctx: LoadContext, what: str) -> Path:
    value = ctx.local_paths.get(task.name)
    if not value:
        raise LocalDataMissingError(task.name, what)
    path = Path(value).expanduser()
    if not path.exists():
        raise LocalDataMissingError(task.name, what, value)
    return path


CCG_SECTIONS = {"train": [f"{s:02d}" for s in range(2, 22)], "dev": ["00"], "test": ["23"]}
CCG_UNKNOWN = "<UNK>"
_AUTO_LEAF = re.compile(r"<L (\S+) (\S+) (\S+) (\S+) (\S+)>")


def parse_auto(text: str) -> list[tuple[list[str], list[str]]]:
    """CCGbank AUTO trees -> (words, supertags) per sentence. A leaf is `<L category mod-POS orig-POS word
    pred-arg-category>`; header lines (`ID=wsj_0001.1 PARSER=GOLD NUMPARSE=1`) separate the trees."""
    sentences = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("ID="):
            continue
        leaves = _AUTO_LEAF.findall(line)
        if leaves:
            sentences.append(([leaf[3] for leaf in leaves], [leaf[0] for leaf in leaves]))
    return sentences


def parse_stagged(text: str) -> list[tuple[list[str], list[str]]]:
    """C&C-style supertagged text: one sentence per line, tokens `word|POS|supertag` separated by spaces."""
    sentences = []
    for line in text.splitlines():
        tokens = [t.rsplit("|", 2) for t in line.split()]
        if tokens:
            if any(len(t) != 3 for t in tokens):
                raise ValueError(f"not a word|POS|supertag line: {line[:80]!r}")
            sentences.append(([t[0] for t in tokens], [t[2] for t in tokens]))
    return sentences


@dataclass(frozen=True)
class CcgbankSource:
    """CCG supertagging from a local CCGbank (LDC2005T13, licensed: never on the hub).

    `local_paths.ccg` may be (a) the CCGbank root, holding `data/AUTO/<section>/*.auto` (or `AUTO/<section>/`):
    the standard split is used, sections 02-21 train, 00 dev, 23 test; or (b) a folder with
    `train.auto`/`dev.auto`/`test.auto` (AUTO trees) or `train.stagged`/`dev.stagged`/`test.stagged`
    (one sentence per line, tokens `word|POS|supertag`). Rows: tokens, supertags (ClassLabel). The tag set is the
    training categories seen at least `min_tag_count` times (option; 10 gives the usual 425 tags); rarer
    categories become "<UNK>", as in the supertagging literature.
    """

    what: str = ("CCGbank, LDC2005T13: its root folder with data/AUTO/<section>/*.auto, or a folder with "
                 "{train,dev,test}.auto or .stagged files (word|POS|supertag per token, one sentence per line)")

    def _read(self, root: Path, role: str) -> list[tuple[list[str], list[str]]]:
        for auto_dir in (root / "data" / "AUTO", root / "AUTO"):
            if auto_dir.is_dir():
                files = sorted(f for s in CCG_SECTIONS[role] for f in glob.glob(str(auto_dir / s / "*.auto")))
                return [s for f in files for s in parse_auto(Path(f).read_text(encoding="utf-8"))]
        for suffix, parse in ((".auto", parse_auto), (".stagged", parse_stagged)):
            file = root / f"{role}{suffix}"
            if file.is_file():
                return parse(file.read_text(encoding="utf-8"))
        raise FileNotFoundError(role)

    def load(self, task: TaskSpec, language: str, role: SplitRole, ctx: LoadContext) -> datasets.Dataset:
        if language != "en":
            raise MissingSplitError(f"task {task.name!r} is English only")
        root = local_path(task, ctx, self.what)
        try:
            train, rows = self._read(root, "train"), self._read(root, role)
        except FileNotFoundError as err:
            raise LocalDataMissingError(task.name, self.what, str(root)) from err
        counts = Counter(tag for _, tags in train for tag in tags)
        names = sorted(t for t, n in counts.items() if n >= task.option("min_tag_count", 10)) + [CCG_UNKNOWN]
        index = {n: i for i, n in enumerate(names)}
        features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                      "supertags": datasets.Sequence(datasets.ClassLabel(names=names))})
        data = {"tokens": [w for w, _ in rows],
                "supertags": [[index.get(t, index[CCG_UNKNOWN]) for t in tags] for _, tags in rows]}
        return cap(datasets.Dataset.from_dict(data, features=features), ctx.max_examples)

    def describe(self) -> str:
        return "local:local_paths.ccg (CCGbank)"


MEWSLI_QUERY_FEATURES = datasets.Features({
    "example_id": datasets.Value("string"), "language": datasets.Value("string"),
    "mention": datasets.Value("string"), "context": datasets.Value("string"), "entity_id": datasets.Value("string")})


@dataclass(frozen=True)
class MewsliXSource:
    """Mewsli-X (XTREME-R entity retrieval) from the files its download script writes; there is no hub copy.

    `local_paths.mewsli_x` is the folder with `wikinews_mentions-{dev,test}.jsonl` and
    `candidate_set_entities.jsonl` (google-research `dense_representations_for_entity_retrieval/mel`,
    `get-mewsli-x.sh`, as XTREME-R's `download_mewslix_data.sh` runs it). Each mention becomes one query row:
    example_id, language, mention (surface text), context (the sentence holding the mention, from the article's
    `sentence_spans`) and entity_id (the gold WikiData QID). `load_candidates` gives the 1M-entity candidate
    set (entity_id, title, description, description_language).
    """

    what: str = ("the Mewsli-X dataset folder (wikinews_mentions-test.jsonl, candidate_set_entities.jsonl) "
                 "written by XTREME-R's scripts/download_mewslix_data.sh")

    def _file(self, task: TaskSpec, ctx: LoadContext, name: str) -> Path:
        file = local_path(task, ctx, self.what) / name
        if not file.is_file():
            raise LocalDataMissingError(task.name, self.what, str(file.parent))
        return file

    def load(self, task: TaskSpec, language: str, role: SplitRole, ctx: LoadContext) -> datasets.Dataset:
        if role == "train":
            raise MissingSplitError(f"task {task.name!r} is scored without training")
        file = self._file(task, ctx, f"wikinews_mentions-{role}.jsonl")
        rows = {name: [] for name in MEWSLI_QUERY_FEATURES}
        with file.open(encoding="utf-8") as f:
            for line in f:
                doc = json.loads(line)
                context = doc["context"]
                if context.get("language") != language:
                    continue
                text, spans = context.get("text", ""), context.get("sentence_spans") or []
                for mention in doc["mentions"]:
                    span = mention["mention_span"]
                    start, end = next(((s["start"], s["end"]) if isinstance(s, dict) else tuple(s) for s in spans
                                       if (s["start"] if isinstance(s, dict) else s[0]) <= span["start"]
                                       < (s["end"] if isinstance(s, dict) else s[1])), (0, len(text)))
                    rows["example_id"].append(mention["example_id"])
                    rows["language"].append(language)
                    rows["mention"].append(span["text"])
                    rows["context"].append(text[start:end].strip() or span["text"])
                    rows["entity_id"].append(mention["entity_id"])
        if not rows["example_id"]:
            raise MissingSplitError(f"task {task.name!r} has no {role!r} mentions for language {language!r}")
        return cap(datasets.Dataset.from_dict(rows, features=MEWSLI_QUERY_FEATURES), ctx.max_examples)

    def load_candidates(self, task: TaskSpec, ctx: LoadContext) -> datasets.Dataset:
        file = self._file(task, ctx, "candidate_set_entities.jsonl")
        # Through `datasets`' JSON builder: the 1M candidates are converted to Arrow once and cached.
        candidates = datasets.load_dataset("json", data_files=str(file), split="train", cache_dir=ctx.cache_dir)
        keep = [c for c in ("entity_id", "title", "description", "description_language")
                if c in candidates.column_names]
        return candidates.select_columns(keep)

    def describe(self) -> str:
        return "local:local_paths.mewsli_x (Mewsli-X)"


def _read_bucc_file(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8") as f:
        return [tuple(line.rstrip("\n").split("\t", 1)) for line in f if line.strip()]  # type: ignore[misc]


@dataclass(frozen=True)
class BuccSource:
    """BUCC 2018 bitext mining. `google/xtreme` `bucc18.<lang>` holds only the gold pairs (columns
    source_sentence, target_sentence and the sentence ids in the misnamed source_lang / target_lang), its
    validation split being BUCC's sample set and its test split BUCC's training set (whose gold XTREME uses as
    test, the official test gold being hidden). Mining among gold pairs alone has no distractors, so scores are
    far above the official ones. With `local_paths.bucc2018` set to the folder of the official files
    (`<lang>-en.{sample,training}.{<lang>,en,gold}`, as XTREME's download_data.sh leaves them), the full corpora
    are read instead, in the same schema: unpaired sentences are rows with an empty other side.
    """

    hub: HubSource

    def parts(self, task, language, role):
        return self.hub.parts(task, language, role)

    def load(self, task: TaskSpec, language: str, role: SplitRole, ctx: LoadContext) -> datasets.Dataset:
        if not ctx.local_paths.get(task.name):
            return self.hub.load(task, language, role, ctx)
        if role == "train":
            raise MissingSplitError(f"task {task.name!r} is scored without training")
        root = local_path(task, ctx, "the BUCC 2018 files <lang>-en.{sample,training}.{<lang>,en,gold}")
        stem = root / f"{language}-en.{'sample' if role == 'dev' else 'training'}"
        files = [Path(f"{stem}.{language}"), Path(f"{stem}.en"), Path(f"{stem}.gold")]
        if not all(f.is_file() for f in files):
            raise LocalDataMissingError(task.name, f"{stem.name}.{{{language},en,gold}}", str(root))
        source, target = dict(_read_bucc_file(files[0])), dict(_read_bucc_file(files[1]))
        gold = _read_bucc_file(files[2])
        paired_s, paired_t = {s for s, _ in gold}, {t for _, t in gold}
        rows = [(source.get(s, ""), target.get(t, ""), s, t) for s, t in gold]
        rows += [(text, "", s, "") for s, text in source.items() if s not in paired_s]
        rows += [("", text, "", t) for t, text in target.items() if t not in paired_t]
        columns = ("source_sentence", "target_sentence", "source_lang", "target_lang")
        data = {c: [r[i] for r in rows] for i, c in enumerate(columns)}
        features = datasets.Features({c: datasets.Value("string") for c in columns})
        return cap(datasets.Dataset.from_dict(data, features=features), ctx.max_examples)

    def describe(self) -> str:
        return f"{self.hub.describe()} or local_paths.bucc2018"


def hub_parts(source: Any, task: TaskSpec, language: str, role: SplitRole) -> list[HubPart]:
    """The hub reads a (task, language, role) needs, for prefetching; [] for local-only sources."""
    parts = getattr(source, "parts", None)
    if parts is None:
        return []
    try:
        return parts(task, language, role)
    except MissingSplitError:
        return []


__all__ = [
    "BuccSource", "CcgbankSource", "DatasetNotCachedError", "DatasetUnavailableError", "DropLabel", "HubPart",
    "HubSource", "IdPrefix", "LocalDataMissingError", "MewsliXSource", "PREFETCH_COMMAND", "RenameColumns",
    "StripDeprelSubtypes", "TydiqaSource", "UdToXtremePos", "hub_offline", "hub_parts", "load_part",
    "parse_auto", "parse_stagged",
]
