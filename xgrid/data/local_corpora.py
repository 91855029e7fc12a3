"""Data sources of the corpora that exist only as local files: licensed (CCGbank), distributed by a download
script (Mewsli-X), or read in full from the official files when present (BUCC 2018, whose hub copy holds only
the gold pairs).

Each reads the folder the search space names under `local_paths.<task>` and returns rows in the same schema a
hub copy would have, so formats never know the difference. A folder that is not set, or does not hold the
files, raises `LocalDataMissingError` naming that option.
"""

from __future__ import annotations

import glob
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import datasets

from xgrid.data.hub import HubPart, HubSource
from xgrid.data.sources import (DatasetUnavailableError, LoadContext, LocalDataMissingError, MissingSplitError,
                                SplitRole, TaskInfo, cap, local_path)

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
    seeded_by_microbench: ClassVar[bool] = False
    cheap_to_load: ClassVar[bool] = False
    local_data: ClassVar[str | None] = "files"

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

    def load(self, task: TaskInfo, language: str, role: SplitRole, ctx: LoadContext) -> datasets.Dataset:
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
    seeded_by_microbench: ClassVar[bool] = False
    cheap_to_load: ClassVar[bool] = False
    local_data: ClassVar[str | None] = "files"

    def _file(self, task: TaskInfo, ctx: LoadContext, name: str) -> Path:
        file = local_path(task, ctx, self.what) / name
        if not file.is_file():
            raise LocalDataMissingError(task.name, self.what, str(file.parent))
        return file

    def load(self, task: TaskInfo, language: str, role: SplitRole, ctx: LoadContext) -> datasets.Dataset:
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

    def load_candidates(self, task: TaskInfo, ctx: LoadContext) -> datasets.Dataset:
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
    are read instead, in the same schema: unpaired sentences are rows with an empty other side. A folder without
    the official files is read as a local copy of the hub's gold pairs (`xgrid prefetch SPACE --to DIR`).
    """

    hub: HubSource
    seeded_by_microbench: ClassVar[bool] = False
    cheap_to_load: ClassVar[bool] = False
    local_data: ClassVar[str | None] = "files"  # the official files, or else a copy of the hub's

    def parts(self, task: TaskInfo, language: str, role: SplitRole) -> list[HubPart]:
        """The hub reads of the gold-pairs copy (what prefetching downloads; the official files are local)."""
        return self.hub.parts(task, language, role)

    @staticmethod
    def official_files(root: str | None) -> bool:
        return bool(root) and Path(root).is_dir() and any(Path(root).glob("*-en.*.gold"))

    def load(self, task: TaskInfo, language: str, role: SplitRole, ctx: LoadContext) -> datasets.Dataset:
        if not self.official_files(ctx.local_paths.get(task.name)):
            return self.hub.load(task, language, role, ctx)  # the hub, or a local copy of it
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


__all__ = ["BuccSource", "CcgbankSource", "DatasetUnavailableError", "LocalDataMissingError", "MewsliXSource",
           "local_path", "parse_auto", "parse_stagged"]
