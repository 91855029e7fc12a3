"""Property: whatever bytes a space file holds, `load_space` returns a space or raises `SpaceError` (one line
per problem), never anything else. Three sources of input: random bytes, random YAML documents, and mutations of
the shipped default space (which land close to valid, where the validators run)."""

from __future__ import annotations

import itertools

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from xgrid.config import SearchSpace, SpaceError, load_space
from xgrid.spaces import DEFAULT_SPACE

DEFAULT_TEXT = DEFAULT_SPACE.read_text()
FUZZ = settings(max_examples=1000, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
# Nested documents are slow to draw (most of this file's time), and the other two sources reach the validators
# more often: 400 of them, 2,400 examples in all.
FUZZ_DOCUMENTS = settings(FUZZ, max_examples=400)

_names = itertools.count()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def loads_or_refuses(folder, content: bytes, registry) -> None:
    path = folder / f"space-{next(_names)}.yaml"
    path.write_bytes(content)
    try:
        space = load_space(path, registry)
    except SpaceError as err:
        assert str(err).strip(), "an empty error message"
        assert "Traceback" not in str(err)
        # where it was refused (--hypothesis-show-statistics): the mutations must reach the field validators
        event("refused by the file or YAML" if str(path) in str(err) else "refused by a field")
    else:
        assert isinstance(space, SearchSpace)
        event("valid")
    finally:
        path.unlink()


@FUZZ
@given(content=st.binary(max_size=600))
def test_random_bytes(folder, registry, content):
    loads_or_refuses(folder, content, registry)


# YAML values of every kind the safe loader builds, nested, under the keys a space uses (so some land on fields)
_KEYS = st.sampled_from(["name", "base_models", "intermediates", "targets", "seeds", "target_training",
                         "learning_rate", "low", "high", "values", "epochs", "retrieval", "layer", "search",
                         "resources", "local_paths", "source", "tasks", "trial_backend", "sampler_seed", "mb_xnli"])
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-2**70, max_value=2**70),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                     st.sampled_from(["none", "mb_xnli", "mb_chunk", "embedded:tiny", "1e-3", ".inf", "inf", "auto",
                                      "2024-13-45", "~", "", "\x00", "é", "a\nb"]),
                     st.dates(), st.binary(max_size=8))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(_KEYS, _SCALARS), inner, max_size=4)), max_leaves=12)


@FUZZ_DOCUMENTS
@given(document=st.dictionaries(_KEYS, _VALUES, max_size=8), flow=st.booleans())
def test_random_yaml_documents(folder, registry, document, flow):
    text = yaml.dump(document, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), default_flow_style=flow,
                     allow_unicode=True)
    loads_or_refuses(folder, text.encode(), registry)


# Edits that YAML files get by accident or by hand: a cut, a pasted snippet, a repeated or lost line
_SNIPPETS = st.sampled_from([
    "&a", "*a", "*b", "<<: *a", ": ", "- ", "\t", "\n", "  ", "{", "}", "[", "]", ",", "'", '"', "#", "!!binary",
    "!!python/object:os.system", "? ", "|", ">", ".inf", ".nan", "-1", "4294967296", "1e-3", "9" * 5000, "\xe9",
    "\x00", "\x85", "\ufeff", "null", "~", "2024-13-45", "&x [*x]", "mb_xnli", "none", "seeds: [0]",
    "layer: 999", "%YAML 1.1\n", "---\n", "...\n",
]).map(str.encode) | st.binary(min_size=1, max_size=6)


@st.composite
def mutated_default(draw):
    data = bytearray(DEFAULT_TEXT.encode())
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        edit = draw(st.sampled_from(["insert", "delete", "replace", "duplicate_line", "drop_line"]))
        at = draw(st.integers(min_value=0, max_value=len(data)))
        if edit == "insert":
            data[at:at] = draw(_SNIPPETS)
        elif edit == "delete":
            del data[at:at + draw(st.integers(min_value=1, max_value=20))]
        elif edit == "replace":
            data[at:at + draw(st.integers(min_value=1, max_value=8))] = draw(_SNIPPETS)
        else:
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            lines[i:i + 1] = [lines[i], lines[i]] if edit == "duplicate_line" else []
            data = bytearray(b"\n".join(lines))
    return bytes(data)


@FUZZ
@given(content=mutated_default())
def test_mutations_of_the_default_space(folder, registry, content):
    loads_or_refuses(folder, content, registry)


def test_the_unmutated_default_space_loads(registry):
    assert load_space(DEFAULT_SPACE, registry).name == "microbench-default"
