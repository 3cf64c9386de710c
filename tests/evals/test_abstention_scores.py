"""HasAns and NoAns scored apart, as SQuAD 2.0 does: a NoAns question is right when the target abstained."""

import asyncio

import pytest

from kotae.core.errors import KotaeError
from kotae.core.qa_jsonl import QAItem
from kotae.evals.commands import abstention_line
from kotae.evals.runner import _abstention_metrics, _answer_metrics, _prediction_row
from kotae.evals.targets import AskOptions, HttpTarget, TargetAnswer
from kotae.rag.abstention import NO_ANSWER
from kotae.rag.engine_protocol import Sampling

HAS_ANS = QAItem("q1", "日本一高い山は？", ("富士山",), ("p1",))
HAS_ANS_2 = QAItem("q2", "日本最大の湖は？", ("琵琶湖",), ("p2",))
NO_ANS = QAItem("q1:noans", "日本一高い山は？", (), ("p1",), answerable=False)
NO_ANS_2 = QAItem("q2:noans", "日本最大の湖は？", (), ("p2",), answerable=False)


def answer(text: str, ranked: list[str] | None = None) -> TargetAnswer:
    return TargetAnswer(text, answerable=text != NO_ANSWER, sources=[], ranked_ids=ranked)


def test_noans_and_hasans_are_scored_apart() -> None:
    rows = [
        _prediction_row(HAS_ANS, answer("富士山", ["p1", "p2"]), 20),
        _prediction_row(HAS_ANS_2, answer(NO_ANSWER, ["p2"]), 20),
        _prediction_row(NO_ANS, answer(NO_ANSWER, ["p3"]), 20),
        _prediction_row(NO_ANS_2, answer("滋賀県", ["p3"]), 20),
    ]
    assert [(row.answerable, row.abstained, row.exact) for row in rows] == [
        (True, False, True),
        (True, True, False),
        (False, True, True),
        (False, False, False),
    ]
    assert rows[2].recall_at is None, "a NoAns question was asked without its gold passages"
    split = _abstention_metrics(rows)
    assert (split.has_ans_n, split.no_ans_n) == (2, 2)
    assert split.has_ans is not None and split.has_ans.exact == 0.5 and split.has_ans_abstained == 0.5
    assert split.no_ans_accuracy == 0.5
    assert _answer_metrics(rows).exact == 0.5
    assert abstention_line(split).endswith("NoAns (2): accuracy 0.500")


def test_a_run_without_noans_questions_reports_no_noans_accuracy() -> None:
    split = _abstention_metrics([_prediction_row(HAS_ANS, answer("富士山"), None)])
    assert (split.no_ans_n, split.no_ans_accuracy, split.has_ans_abstained) == (0, None, 0.0)


def test_noans_questions_made_from_gold_passages_are_refused_over_http() -> None:
    ask = AskOptions(top_k=3, retrieval_depth=3, contexts="retrieved", adapter=None, sampling=Sampling())
    target = HttpTarget("http://127.0.0.1:9", concurrency=1)
    with pytest.raises(KotaeError, match="in-process"):
        asyncio.run(target.answer_all([HAS_ANS, NO_ANS], ask, lambda: None))
