from kotae.core.passage import Passage
from kotae.rag.prompt import (
    build_prompt,
    clean_answer,
    context_line,
    fit_contexts,
)

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
    assert build_prompt(" 日本一高い山は？\n", contexts) == EXPECTED


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
