import pytest

from kotae.core.errors import KotaeError
from kotae.core.passage import Passage
from kotae.rag.prompt import DEFAULT_PROMPTER, Prompter, clean_answer, context_line, fit_contexts

EXPECTED = (
    "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。\n\n"
    "### 指示:\n日本一高い山は？\n\n"
    "### 入力:\n富士山 富士山は標高3776メートルの山です。\n琵琶湖 琵琶湖は日本最大の 湖です。\n\n"
    "### 応答:\n"
)


def test_prompt_is_byte_exact():
    passages = [
        Passage("a", "富士山", "富士山は標高3776メートルの山です。"),
        Passage("b", "琵琶湖", "琵琶湖は日本最大の\n湖です。"),
    ]
    contexts = fit_contexts(passages, len, budget=1000)
    assert DEFAULT_PROMPTER.qa(" 日本一高い山は？\n", contexts) == EXPECTED


def test_context_line_keeps_title_and_flattens_newlines():
    assert context_line(Passage("x", "題", "一行目\n二行目")) == "題 一行目 二行目"


def test_contexts_are_trimmed_to_the_budget_in_rank_order():
    passages = [Passage(str(i), f"t{i}", "あ" * 40) for i in range(5)]
    lines = fit_contexts(passages, len, budget=100)
    assert [line.split()[0] for line in lines] == ["t0", "t1", "t2"]
    assert sum(len(line) + 1 for line in lines) <= 100
    assert len(lines[-1]) < len(lines[0])


def test_answer_stops_at_blank_line_or_section_header():
    assert clean_answer("富士山\n\n### 指示:\n次の質問") == "富士山"
    assert clean_answer(" 1192年 ### 入力") == "1192年"


class ChatTokenizer:
    """Stands in for a tokenizer with a chat template (the real one is tested with the tiny Gemma)."""

    bos_token = "<bos>"
    chat_template = "user turns only"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert not tokenize and add_generation_prompt
        return "".join(f"<bos><user>{m['content']}</user>" for m in messages) + "<model>"


CONTEXTS = ["富士山 富士山は標高3776メートルの山です。", "琵琶湖 琵琶湖は日本最大の 湖です。"]


@pytest.mark.parametrize(
    ("prompt_format", "expected"),
    [
        ("alpaca-ja", EXPECTED),
        ("chat-template", "<user>日本一高い山は？\n\n" + "\n".join(CONTEXTS) + "</user><model>"),
        ("rwkv", "+qa 日本一高い山は？\n" + "\n".join(CONTEXTS) + "\n答え:"),
        ("record-line", "指示:日本一高い山は？ 入力:" + " ".join(CONTEXTS) + " 応答:"),
    ],
)
def test_every_format_writes_a_qa_prompt_byte_exact(prompt_format, expected):
    assert Prompter(prompt_format, ChatTokenizer()).qa(" 日本一高い山は？\n", CONTEXTS) == expected


def test_instructions_without_input_use_the_generation_prefix_and_stay_on_one_line():
    assert Prompter("rwkv").render("俳句を一つ作って。") == "+gen 俳句を一つ作って。\n"
    assert (
        Prompter("record-line").render("要約して。", "一行目\n二行目")
        == "指示:要約して。 入力:一行目 二行目 応答:"
    )
    assert Prompter("chat-template", ChatTokenizer()).render("挨拶して。") == "<user>挨拶して。</user><model>"


def test_chat_template_needs_a_tokenizer_that_has_one():
    with pytest.raises(KotaeError, match="chat template"):
        Prompter("chat-template").render("挨拶して。")
