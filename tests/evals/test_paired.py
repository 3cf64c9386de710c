import math

import pytest
from run_fixtures import sample_metrics, save
from typer.testing import CliRunner

from kotae.core.errors import InputError
from kotae.evals.commands import eval_app
from kotae.evals.paired import ScoredQuestion, load_scores, paired_differences, paired_rows
from kotae.evals.schema import PredictionRow


def prediction(qid, exact, answerable=True):
    return PredictionRow(
        qid=qid,
        question="日本の首都は？",
        golds=["東京"] if answerable else [],
        answerable=answerable,
        prediction="東京" if exact == answerable else "大阪",
        abstained=not answerable and exact,
        sources=[],
        retrieved_ids=None,
        exact=exact,
        partial=exact,
        char_f1=float(exact),
        recall_at=None,
        reciprocal_rank=None,
        finish_reason="stop",
        prompt_tokens=None,
        completion_tokens=None,
        error=None,
    )


def save_run(tmp_path, name, rows):
    run = save(tmp_path, name, sample_metrics(adapter=name, n=len(rows)))
    (run / "predictions.jsonl").write_text("".join(row.model_dump_json() + "\n" for row in rows))
    return run


# q0–q3 answerable, q4–q5 NoAns. The second run gains q1 and q5 and loses q2.
FIRST = [(True, True), (False, True), (True, True), (False, True), (True, False), (False, False)]
SECOND = [(True, True), (True, True), (False, True), (False, True), (True, False), (True, False)]


def rows_of(marks):
    return [prediction(f"q{i}", exact, answerable) for i, (exact, answerable) in enumerate(marks)]


def scores_of(marks):
    return {f"q{i}": ScoredQuestion(answerable, exact) for i, (exact, answerable) in enumerate(marks)}


def test_gains_losses_and_their_standard_error_over_all_and_answerable_questions():
    every, answerable = paired_differences(scores_of(FIRST), scores_of(SECOND))
    assert (every.subset, every.n, every.gained, every.lost) == ("all", 6, 2, 1)
    assert every.delta == pytest.approx(1 / 6)
    # Differences (0, +1, −1, 0, 0, +1): mean 1/6, variance 3/6 − 1/36.
    assert every.standard_error == pytest.approx(math.sqrt((3 / 6 - 1 / 36) / 6))
    assert (answerable.subset, answerable.n, answerable.gained, answerable.lost) == ("HasAns", 4, 1, 1)
    assert answerable.delta == 0


def test_a_set_without_noans_questions_is_compared_once():
    only_answerable = FIRST[:4]
    (every,) = paired_differences(scores_of(only_answerable), scores_of(only_answerable))
    assert (every.subset, every.gained, every.lost, every.standard_error) == ("all", 0, 0, 0.0)


def test_runs_of_different_questions_are_refused_naming_the_run(tmp_path):
    first = save_run(tmp_path, "first", rows_of(FIRST))
    shorter = save_run(tmp_path, "shorter", rows_of(SECOND[:5]))
    with pytest.raises(InputError, match=r"shorter.*different questions"):
        paired_rows([first, shorter], ["first", "shorter"])


def test_missing_or_broken_predictions_name_the_file_and_line(tmp_path):
    run = save(tmp_path, "no-predictions", sample_metrics())
    with pytest.raises(InputError, match=r"no-predictions/predictions\.jsonl: no predictions"):
        load_scores(run)
    broken = save_run(tmp_path, "broken", rows_of(FIRST))
    with (broken / "predictions.jsonl").open("a") as lines:
        lines.write('{"qid": "q9"}\n')
    with pytest.raises(InputError, match=r"broken/predictions\.jsonl:7: question: Field required"):
        load_scores(broken / "metrics.json")


def test_compare_prints_the_paired_table_in_markdown(tmp_path):
    runs = [save_run(tmp_path, "first", rows_of(FIRST)), save_run(tmp_path, "second", rows_of(SECOND))]
    result = CliRunner().invoke(eval_app, ["compare", *map(str, runs), "--paired", "--markdown"])
    assert result.exit_code == 0, result.output
    assert "| run | questions | n | exact Δ | gained | lost | SE |" in result.output
    assert "| gemma-3-270m / second / bf16 | all | 6 | +16.7 | 2 | 1 | 28.1 |" in result.output
    assert "| gemma-3-270m / second / bf16 | HasAns | 4 | +0.0 | 1 | 1 | 35.4 |" in result.output


def test_paired_needs_a_second_run(tmp_path):
    run = save_run(tmp_path, "first", rows_of(FIRST))
    result = CliRunner().invoke(eval_app, ["compare", str(run), "--paired"])
    assert result.exit_code == 2 and "give two runs or more" in result.output
