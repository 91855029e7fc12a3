import pytest

from xgrid.metrics import mlqa_metrics, mlqa_normalize_answer, normalize_answer, qa_score, squad_metrics
from xgrid.metrics.qa import f1_score, mlqa_f1_score, mlqa_tokenize


# ---------------------------------------------------------------- SQuAD normalisation / scores


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # lower -> "the  quick, brown-fox!"; drop punctuation (the hyphen too, joining the words)
        # -> "the  quick brownfox"; drop "the"; collapse whitespace
        ("The  Quick, brown-Fox!", "quick brownfox"),
        ("an apple a day", "apple day"),
        # articles only as whole words
        ("Theatre anatomy", "theatre anatomy"),
        ("A", ""),
        # ASCII punctuation only: curly quotes and the em dash survive in SQuAD normalisation
        ("“Hi” — there", "“hi” — there"),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_f1_token_overlap():
    # pred tokens [cat, sat, on, mat] (4), gold [cat, on, mat] (3), common 3
    # P = 3/4, R = 3/3, F1 = 2*(3/4)*1/(3/4+1) = 1.5/1.75 = 6/7
    assert f1_score("the cat sat on the mat", "a cat on a mat") == pytest.approx(6 / 7)


def test_f1_repeated_tokens_counted_with_multiplicity():
    # pred [cat, cat], gold [cat]: common = min(2, 1) = 1, P = 1/2, R = 1, F1 = 1/(3/2) = 2/3
    assert f1_score("the cat cat", "cat") == pytest.approx(2 / 3)


def test_squad_metrics_multiple_gold_answers():
    preds = {"q1": "Denver Broncos", "q2": "in 1990", "q3": "Paris"}
    refs = {
        "q1": ["Broncos", "Denver Broncos"],  # EM 1, F1 1 (second gold)
        # vs "1990": P=1/2, R=1 -> F1 2/3; vs "the year 1990" -> [year, 1990]: P=1/2, R=1/2 -> 1/2; max 2/3; EM 0
        "q2": ["1990", "the year 1990"],
        "q3": ["London"],  # 0, 0
    }
    out = squad_metrics(preds, refs)
    # EM = 1/3 -> 33.33; F1 = (1 + 2/3 + 0)/3 = 5/9 -> 55.56
    assert out["exact_match"] == pytest.approx(100 / 3)
    assert out["f1"] == pytest.approx(500 / 9)
    assert set(out) == {"exact_match", "f1"}


def test_squad_metrics_punctuation_and_articles_give_exact_match():
    out = squad_metrics({"q": "The Eiffel Tower."}, {"q": ["eiffel tower"]})
    assert out == {"exact_match": pytest.approx(100.0), "f1": pytest.approx(100.0)}


def test_squad_metrics_missing_prediction_scores_zero_and_warns():
    # q1 exact (1, 1), q2 missing (0, 0): EM = F1 = 1/2 -> 50
    with pytest.warns(UserWarning, match="1 of 2 questions have no prediction"):
        out = squad_metrics({"q1": "yes", "extra": "ignored"}, {"q1": ["yes"], "q2": ["no"]})
    assert out == {"exact_match": pytest.approx(50.0), "f1": pytest.approx(50.0)}


@pytest.mark.parametrize("version", ["1.1", "2.0"])
def test_squad_v2_no_answer(version):
    preds = {"a": "", "b": "France", "c": "Normandy", "d": "The"}
    refs = {"a": [], "b": [], "c": ["Normandy"], "d": []}
    # a: no-answer predicted "" -> 1, 1
    # b: no-answer but "France" predicted -> 0, 0
    # c: exact -> 1, 1
    # d: "The" normalises to "" -> counts as abstaining in the official v2 script -> 1, 1
    # EM = F1 = 3/4 -> 75
    out = squad_metrics(preds, refs, version=version)
    assert out["exact_match"] == pytest.approx(75.0)
    assert out["f1"] == pytest.approx(75.0)


@pytest.mark.parametrize("version", ["1.1", "2.0"])
def test_squad_empty_prediction_for_answerable_question(version):
    out = squad_metrics({"q": ""}, {"q": ["Paris"]}, version=version)
    assert out == {"exact_match": 0.0, "f1": 0.0}


def test_squad_v1_vs_v2_on_gold_that_normalises_to_empty():
    # gold "the" normalises to "" and prediction "" too.
    # v1.1: EM compares normalised strings ("" == "") -> 1; F1 has no common token -> 0.
    # v2.0: gold answers normalising to "" are dropped -> treated as no-answer [""] -> EM 1, F1 1.
    v1 = squad_metrics({"q": ""}, {"q": ["the"]}, version="1.1")
    v2 = squad_metrics({"q": ""}, {"q": ["the"]}, version="2.0")
    assert v1 == {"exact_match": pytest.approx(100.0), "f1": pytest.approx(0.0)}
    assert v2 == {"exact_match": pytest.approx(100.0), "f1": pytest.approx(100.0)}


def test_squad_bad_inputs():
    with pytest.raises(ValueError, match="version"):
        squad_metrics({"q": "x"}, {"q": ["x"]}, version="3.0")
    with pytest.raises(ValueError, match="list of answer strings"):
        squad_metrics({"q": "x"}, {"q": "x"})
    with pytest.raises(ValueError, match="no references"):
        squad_metrics({}, {})


def test_qa_score():
    # (60 + 75) / 2 = 67.5
    assert qa_score({"exact_match": 60.0, "f1": 75.0}) == pytest.approx(67.5)


# ---------------------------------------------------------------- MLQA


def test_mlqa_unicode_punctuation():
    # “ (Pi) ” (Pf) — (Pd) … (Po) are Unicode punctuation -> "hello  world" -> "hello world"
    assert mlqa_normalize_answer("“Hello” — world…", "en") == "hello world"
    out = mlqa_metrics({"q": "“Hello” — world…"}, {"q": ["hello world"]}, "en")
    assert out == {"exact_match": pytest.approx(100.0), "f1": pytest.approx(100.0)}
    # the SQuAD script keeps them: tokens ["“hello”", "—", "world…"] vs ["hello", "world"] -> no overlap
    assert squad_metrics({"q": "“Hello” — world…"}, {"q": ["hello world"]}) == {"exact_match": 0.0, "f1": 0.0}


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("El perro de la casa", "es", "perro de casa"),
        ("Der Hund und die Katze", "de", "hund und katze"),
        ("cái bàn", "vi", "bàn"),
        ("The dog", "en", "dog"),
        # Spanish articles are not removed for en
        ("el perro", "en", "el perro"),
        # hi: no article removal, whitespace tokenisation
        ("भारत का इतिहास", "hi", "भारत का इतिहास"),
        # ar: the official regex r"\sال^|ال" removes *every* "ال", also inside words: "الكتاب" -> "كتاب", "مال" -> "م"
        ("الكتاب", "ar", "كتاب"),
        ("مال", "ar", "م"),
        # zh: one token per CJK character, Latin runs kept whole, Chinese punctuation removed
        ("北京大学。", "zh", "北 京 大 学"),
        ("iPhone手机", "zh", "iphone 手 机"),
    ],
)
def test_mlqa_normalize_answer(text, lang, expected):
    assert mlqa_normalize_answer(text, lang) == expected


def test_mlqa_language_specific_articles_change_scores():
    # de: "Der Hund" -> "hund" == "hund" -> EM 1
    assert mlqa_metrics({"q": "Der Hund"}, {"q": ["Hund"]}, "de") == {"exact_match": 100.0, "f1": 100.0}
    # en: "der hund" vs "hund": EM 0; P = 1/2, R = 1 -> F1 = 2/3
    out = mlqa_metrics({"q": "Der Hund"}, {"q": ["Hund"]}, "en")
    assert out["exact_match"] == 0.0
    assert out["f1"] == pytest.approx(200 / 3)


def test_mlqa_zh_character_level_f1():
    # gold 北京大学 -> [北, 京, 大, 学]; pred 北京 -> [北, 京]; common 2
    # P = 2/2 = 1, R = 2/4 = 1/2, F1 = 2*(1/2)/(3/2) = 2/3
    assert mlqa_tokenize("北京大学", "zh") == ["北", "京", "大", "学"]
    assert mlqa_f1_score("北京", "北京大学", "zh") == pytest.approx(2 / 3)
    # the same strings with whitespace tokenisation are single, different tokens -> 0
    assert mlqa_f1_score("北京", "北京大学", "en") == 0.0
    # mixed: [iphone, 手, 机] vs [苹, 果, iphone]: common 1, P = R = 1/3 -> F1 = 1/3
    assert mlqa_f1_score("iPhone手机", "苹果iPhone", "zh") == pytest.approx(1 / 3)


def test_mlqa_metrics_zh_average_and_multiple_golds():
    preds = {"q1": "北京", "q2": "上海。"}
    refs = {"q1": ["北京大学", "中国北京"], "q2": ["上海"]}
    # q1: vs 北京大学 F1 2/3; vs 中国北京 [中, 国, 北, 京]: common 2, P=1, R=1/2 -> 2/3; EM 0
    # q2: "上海。" -> [上, 海] == [上, 海]: EM 1, F1 1
    # EM = 1/2 -> 50; F1 = (2/3 + 1)/2 = 5/6 -> 83.33
    out = mlqa_metrics(preds, refs, "zh")
    assert out["exact_match"] == pytest.approx(50.0)
    assert out["f1"] == pytest.approx(250 / 3)


def test_mlqa_errors():
    with pytest.raises(ValueError, match="unknown language 'fr'"):
        mlqa_metrics({"q": "x"}, {"q": ["x"]}, "fr")
    with pytest.raises(ValueError, match="no 'no answer' case"):
        mlqa_metrics({"q": ""}, {"q": []}, "en")
