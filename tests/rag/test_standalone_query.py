"""The retrieval query of a chat's last question (`kotae.rag.standalone_query`)."""

import pytest

from kotae.rag.abstention import NO_ANSWER
from kotae.rag.conversation import Conversation, Turn
from kotae.rag.standalone_query import is_follow_up, standalone_query

FUJI = Turn("日本で最も高い山は何ですか？", "富士山")


def test_without_earlier_turns_the_question_is_the_query():
    assert standalone_query(Conversation(" その標高は？ ")) == "その標高は？"


@pytest.mark.parametrize(
    "question",
    [
        "その標高は何メートルですか？",
        "それはいつ噴火しましたか？",
        "では、二番目は？",
        "高さは？",
        "彼は誰ですか？",
    ],
)
def test_pointing_back_or_naming_nothing_is_a_follow_up(question):
    assert is_follow_up(question)


@pytest.mark.parametrize("question", ["琵琶湖は何県にありますか？", "聖徳太子は何をした人ですか？"])
def test_a_question_naming_its_subject_is_not(question):
    assert not is_follow_up(question)


def test_a_follow_up_gets_the_previous_content_words_and_answer():
    query = standalone_query(Conversation("その標高は何メートルですか？", (FUJI,)))
    assert query == "日本 山 富士山 その標高は何メートルですか？"


def test_a_question_with_its_own_subject_stays_as_it_is():
    assert (
        standalone_query(Conversation("琵琶湖は何県にありますか？", (FUJI,))) == "琵琶湖は何県にありますか？"
    )


def test_queries_chain_over_turns():
    turns = (Turn("関ヶ原の戦いで勝ったのは？", "徳川家康"), Turn("その戦いはどこで？", "岐阜県"))
    assert (
        standalone_query(Conversation("いつ起きましたか？", turns))
        == "関ヶ原 戦い 徳川家康 岐阜県 いつ起きましたか？"
    )


def test_long_answers_and_the_no_answer_text_are_not_taken_as_entities():
    for answer in (NO_ANSWER, "富士山は静岡県と山梨県にまたがる日本で最も高い山です。"):
        query = standalone_query(Conversation("その標高は？", (Turn(FUJI.question, answer),)))
        assert query == "日本 山 その標高は？"


def test_a_message_longer_than_sudachi_reads_is_read_from_its_start():
    long_question = "富士山について。" + "あ" * 60_000
    query = standalone_query(Conversation("その標高は？", (Turn(long_question, "富士山"),)))
    assert query.startswith("富士山") and query.endswith("その標高は？")


def test_a_conversation_asked_again_is_not_read_again(monkeypatch):
    conversation = Conversation("その高さは何メートルですか？", (FUJI,))
    first = standalone_query(conversation)
    monkeypatch.setattr(
        "kotae.rag.standalone_query._rewrite", lambda *_: pytest.fail("the conversation was read again")
    )
    assert standalone_query(Conversation("その高さは何メートルですか？", (FUJI,))) == first
