import pytest

from kotae.rag.metrics import llm_jp_char_f1, normalize_answer, score_answer, score_retrieval


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("１９９０年", "1990年"),  # full-width digits
        ("ＤＮＡ", "DNA"),  # full-width letters
        ("ｶﾀｶﾅ", "カタカナ"),  # half-width katakana
        (" 東京 都\u3000", "東京都"),  # spaces, the ideographic one too
        ("「東京」", "東京"),
        ("『ハリー・ポッター』", "ハリー・ポッター"),
        ("ハリー・ポッター』", "ハリー・ポッター"),  # stray closing bracket copied from the passage
        ("「奈良", "奈良"),  # opened, never closed
        ("」奈良", "奈良"),
        ("「東京」。", "東京"),  # bracket pair and final period, in either order
        ("奈良。」", "奈良"),
        ("『「源氏物語」』", "源氏物語"),
        ("「A」と「B」", "「A」と「B」"),  # pairs inside the answer stay
        ("『A』の「B」", "『A』の「B」"),
        ("東京。", "東京"),
        ("", ""),
        ("。", ""),
    ],
)
def test_normalization(raw, normalized):
    assert normalize_answer(raw) == normalized


def test_exact_match_after_normalization():
    assert score_answer("１９９０年", ["1990年"]).exact
    assert score_answer("『ＤＮＡ』。", ["DNA"]).exact
    assert score_answer("ハリー・ポッター』", ["『ハリー・ポッター』"]).exact
    assert not score_answer("1990", ["1990年"]).exact


def test_several_golds_take_the_best():
    golds = ["小笠原諸島を除く日本", "小笠原諸島"]
    assert score_answer("小笠原諸島", golds).exact
    assert score_answer("小笠原諸島", golds).char_f1 == 1.0
    assert score_answer("小笠原諸島を除く", golds).partial
    assert not score_answer("小笠原諸島を除く", golds).exact


def test_partial_match_both_ways():
    assert score_answer("答えは奈良です。", ["奈良"]).partial  # gold inside the prediction
    assert score_answer("奈", ["奈良"]).partial  # prediction inside a gold
    assert not score_answer("京都", ["奈良"]).partial


def test_empty_prediction_scores_nothing():
    for prediction in ["", "  ", "。", "「」"]:
        score = score_answer(prediction, ["奈良", "平城京"])
        assert (score.exact, score.partial, score.char_f1) == (False, False, 0.0)


# Expected values computed with llm-jp-eval's own dependencies (fuzzywuzzy 0.18 + python-Levenshtein).
@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("東京都", "東京", 0.8),
        ("約15メートル", "15メートル", 0.92),
        ("ハリー・ポッター", "ハリーポッター", 0.93),  # ・ splits tokens
        ("b、a", "a b", 1.0),  # tokens are sorted
        ("×2", "2", 1.0),  # U+0080–U+00FF are dropped
        ("ABC", "abc", 1.0),  # lowercased
        ("a" + "x" * 39, "a" + "y" * 39, 0.03),  # 2/80 rounds up through float error, as upstream
        ("", "奈良", 0.0),
    ],
)
def test_char_f1_matches_llm_jp_eval(prediction, gold, expected):
    assert llm_jp_char_f1(prediction, gold) == expected


def test_char_f1_is_applied_after_normalization():
    assert score_answer("「１５メートル」", ["約15メートル"]).char_f1 == 0.92


def test_retrieval_recall_and_reciprocal_rank():
    score = score_retrieval(["p3", "p1", "p2"], ["p1"], depth=20)
    assert score.recall == {1: 0.0, 5: 1.0, 20: 1.0}
    assert score.reciprocal_rank == 0.5


def test_recall_is_measured_only_as_deep_as_the_ranking_was_asked():
    score = score_retrieval(["p1", "p2", "p3"], ["p1"], depth=3)
    assert score.recall == {1: 1.0}


def test_retrieval_with_several_golds_and_a_miss():
    assert score_retrieval(["a", "x", "b"], ["b", "c"], depth=20).recall == {1: 0.0, 5: 0.5, 20: 0.5}
    assert score_retrieval(["x", "y"], ["b"], depth=20).reciprocal_rank == 0.0


def test_a_chunk_counts_as_its_document():
    score = score_retrieval(["other#1", "doc#2", "doc#1"], ["doc"], depth=20)
    assert score.recall == {1: 0.0, 5: 1.0, 20: 1.0} and score.reciprocal_rank == 0.5
    assert score_retrieval(["doc#2"], ["doc#2"], depth=20).reciprocal_rank == 1.0
    assert score_retrieval(["doc#x"], ["doc"], depth=20).reciprocal_rank == 0.0  # not a chunk number
