"""OpenAI messages as a conversation (`kotae.server.chat.history`) and streamed blanks (`EdgeBlanks`)."""

import pytest

from kotae.rag.conversation import Conversation, Turn
from kotae.server.chat.edge_blanks import EdgeBlanks
from kotae.server.chat.history import conversation_of
from kotae.server.chat.protocol import ChatMessage
from kotae.server.core.errors import APIError


def messages(*pairs: tuple[str, str]) -> list[ChatMessage]:
    return [ChatMessage(role=role, content=content) for role, content in pairs]  # type: ignore[arg-type]


def test_turns_system_text_and_the_last_question():
    chat = messages(
        ("assistant", "ご用件は？"),
        ("system", "簡潔に。"),
        ("user", "日本一高い山は？"),
        ("assistant", "富士山"),
        ("tool", "{}"),
        ("developer", "敬語で。"),
        ("user", "どこに"),
        ("user", "ありますか？"),
        ("user", "その標高は？"),
        ("assistant", "ignored: after the question"),
    )
    assert conversation_of(chat) == Conversation(
        question="その標高は？",
        turns=(Turn("日本一高い山は？", "富士山"), Turn("どこに\nありますか？")),
        system="簡潔に。\n敬語で。",
    )


def test_a_chat_without_a_user_message_is_refused():
    with pytest.raises(APIError, match="no user message"):
        conversation_of(messages(("system", "簡潔に。"), ("assistant", "富士山")))


def test_edge_blanks_are_not_streamed():
    blanks = EdgeBlanks()
    sent = [blanks.feed(piece) for piece in (" \n", " 富士", "山 ", " です", "\n ", "")]
    assert "".join(sent) == "富士山  です"
