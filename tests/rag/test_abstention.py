"""The abstention answer and the two signals that give it."""

import pytest

from kotae.rag.abstention import NO_ANSWER, gate_completion, is_no_answer, passes_gate


@pytest.mark.parametrize(
    ("answer", "abstains"),
    [
        (NO_ANSWER, True),
        ("資料には答えが見つかりません", True),
        (" 資料には 答えが見つかりません。 ", True),
        ("富士山", False),
        ("", False),
        ("資料には答えが見つかりません。富士山", False),
        (f"{NO_ANSWER}\n{NO_ANSWER}\n\n{NO_ANSWER}", True),
        (f"{NO_ANSWER}\n富士山", False),
        ("\n \n", False),
    ],
)
def test_the_model_abstains_by_writing_the_fixed_text(answer: str, abstains: bool) -> None:
    assert is_no_answer(answer) is abstains


def test_the_gate_stops_questions_nothing_is_close_to() -> None:
    assert not passes_gate(0.79, 0.8)
    assert passes_gate(0.8, 0.8) and passes_gate(0.95, 0.8)


def test_the_gate_passes_everything_when_off_or_without_a_search() -> None:
    assert passes_gate(0.1, 0.0)
    assert passes_gate(None, 0.8), "given passages: no collection was searched"


def test_the_gate_answers_the_fixed_text_without_generating() -> None:
    completion = gate_completion()
    assert (completion.text, completion.completion_tokens, completion.finish_reason) == (NO_ANSWER, 0, "stop")
