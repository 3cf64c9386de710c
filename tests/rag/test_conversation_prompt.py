"""Prompts of a chat with system messages and earlier turns, in every prompt format."""

import pytest
from jinja2 import TemplateError

from kotae.core.passage import Passage
from kotae.rag.conversation import Conversation, Turn
from kotae.rag.prompt import PREAMBLE, PROMPT_FORMATS, HistoryTooLong, Prompter, fit_conversation, fit_prompt

CONTEXTS = ["富士山 富士山は標高3776メートルの山です。"]
CHAT = Conversation(
    question="その標高は？",
    turns=(Turn("日本一高い山は？", "富士山"), Turn("どこにありますか？")),
    system="簡潔に答えてください。",
)
STANDALONE = "日本一 山 富士山 その標高は？"
"""`CHAT`'s last question made standalone (`kotae.rag.standalone_query`): the instruction formats ask it."""


class RoleTokenizer:
    """A chat template that writes each message's role; with `system_role=False` it refuses a system
    message, as templates without one do."""

    bos_token = "<bos>"
    chat_template = "roles"

    def __init__(self, system_role: bool = True) -> None:
        self.system_role = system_role

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        if not self.system_role and any(m["role"] == "system" for m in messages):
            raise TemplateError("System role not supported")
        return "<bos>" + "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages) + "<model>"


def prompter(prompt_format: str, system_role: bool = True) -> Prompter:
    return Prompter(prompt_format, RoleTokenizer(system_role))  # type: ignore[arg-type]


@pytest.mark.parametrize("prompt_format", PROMPT_FORMATS)
def test_a_lone_question_gets_exactly_the_single_question_prompt(prompt_format):
    lone = prompter(prompt_format)
    assert lone.conversation(Conversation(" 日本一高い山は？\n"), CONTEXTS) == lone.qa(
        " 日本一高い山は？\n", CONTEXTS
    )
    assert lone.conversation(Conversation("挨拶して。"), []) == lone.qa("挨拶して。", [])


def test_alpaca_asks_the_standalone_question_after_the_system_text_and_puts_the_turns_after_the_passages():
    assert prompter("alpaca-ja").conversation(CHAT, CONTEXTS) == (
        PREAMBLE + "\n\n### 指示:\n簡潔に答えてください。\n" + STANDALONE + "\n\n"
        "### 入力:\n富士山 富士山は標高3776メートルの山です。\n"
        "質問: 日本一高い山は？\n答え: 富士山\n質問: どこにありますか？\n\n### 応答:\n"
    )


def test_rwkv_keeps_the_instruction_on_the_qa_line():
    assert prompter("rwkv").conversation(CHAT, CONTEXTS) == (
        "+qa 簡潔に答えてください。 " + STANDALONE + "\n"
        "富士山 富士山は標高3776メートルの山です。\n"
        "質問: 日本一高い山は？\n答え: 富士山\n質問: どこにありますか？\n答え:"
    )


def test_record_line_stays_on_one_line():
    assert prompter("record-line").conversation(CHAT, CONTEXTS) == (
        "指示:簡潔に答えてください。 " + STANDALONE + " "
        "入力:富士山 富士山は標高3776メートルの山です。 "
        "質問: 日本一高い山は？ 答え: 富士山 質問: どこにありますか？ 応答:"
    )


def test_chat_template_gets_the_turns_as_its_own_messages():
    assert prompter("chat-template").conversation(CHAT, CONTEXTS) == (
        "<system>簡潔に答えてください。</system><user>日本一高い山は？</user><assistant>富士山</assistant>"
        "<user>どこにありますか？</user>"
        "<user>その標高は？\n\n富士山 富士山は標高3776メートルの山です。</user><model>"
    )


def test_a_template_without_a_system_role_gets_the_system_text_in_the_first_user_turn():
    assert prompter("chat-template", system_role=False).conversation(CHAT, []) == (
        "<user>簡潔に答えてください。\n\n日本一高い山は？</user><assistant>富士山</assistant>"
        "<user>どこにありますか？</user><user>その標高は？</user><model>"
    )


PASSAGES = [Passage(str(i), f"t{i}", "あ" * 40) for i in range(5)]


def test_the_history_takes_its_tokens_from_the_passages_budget():
    lone = fit_prompt("その標高は？", PASSAGES, len, 200)
    chat = fit_conversation(CHAT, PASSAGES, len, 200)
    assert chat.passages < lone.passages
    history = len(Prompter().conversation(CHAT, [])) - len(Prompter().qa(CHAT.question, []))
    context_chars = len(chat.text) - len(Prompter().conversation(CHAT, []))
    assert history + context_chars <= 200


def test_a_history_longer_than_the_budget_is_refused():
    long = Conversation("その標高は？", tuple(Turn("質問" * 20, "答え" * 20) for _ in range(5)))
    with pytest.raises(HistoryTooLong, match="earlier turns take"):
        fit_conversation(long, PASSAGES, len, 100)
