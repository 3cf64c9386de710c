"""SFT examples are the served prompts: same bytes, same tokens, and an answer that fits."""

import random
from pathlib import Path

import pytest

from kotae.adapters.config import SFTRunConfig
from kotae.adapters.sft_examples import COMPLETION_END, _place_gold, completion_for
from kotae.core.config import Settings
from kotae.core.passage import Passage
from kotae.rag.collections import Collections
from kotae.rag.engine_protocol import ANSWER_STOPS, Sampling
from kotae.rag.pipeline import Pipeline, make_prompt
from kotae.rag.prompt import DEFAULT_PROMPTER, PROMPT_FORMATS, Prompter, fit_contexts
from kotae.rag.token_counter import TokenCounter

ALPACA = Path(__file__).parent / "data" / "alpaca-ja.jsonl"
"""Six Alpaca-style records written for these tests, with and without an input."""

GOLD = Passage("g", "富士山", "富士山の標高は3776メートルである。")
OTHERS = [Passage(str(i), f"題{i}", "あ" * 30) for i in range(4)]


def test_gold_passage_moves_up_until_its_answer_fits_the_budget():
    # Each distractor line costs 34 characters: with budget 80 only two lines fit.
    for seed in range(20):
        passages = _place_gold(GOLD, OTHERS, "3776メートル", len, 80, random.Random(seed))
        assert passages is not None and GOLD in passages
        rank = passages.index(GOLD)
        assert "3776メートル" in fit_contexts(passages, len, 80)[rank]
        assert sorted(p.id for p in passages if p is not GOLD) == ["0", "1", "2", "3"]


def test_gold_passage_lands_at_every_rank_when_all_fit():
    ranks = {_place_gold(GOLD, OTHERS, "3776", len, 10_000, random.Random(s)).index(GOLD) for s in range(60)}
    assert ranks == {0, 1, 2, 3, 4}


def test_question_whose_answer_cannot_fit_is_dropped():
    assert _place_gold(GOLD, OTHERS, "3776メートル", len, 12, random.Random(0)) is None


def test_completion_ends_at_the_first_served_stop():
    assert COMPLETION_END == ANSWER_STOPS[0] == "\n\n"
    assert completion_for(" 富士山 \n") == "富士山\n\n"


def test_training_puts_as_many_passages_in_a_prompt_as_the_server_does():
    training, serving = SFTRunConfig(base=Path("base"), out=Path("out")), Settings(_env_file=None)
    assert (training.contexts, training.context_token_budget) == (serving.top_k, serving.context_token_budget)


@pytest.mark.parametrize("prompt_format", PROMPT_FORMATS)
def test_training_prompt_is_the_serving_prompt_byte_for_byte(
    tiny_gemma, engine_settings, served, prompt_format
):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_gemma)
    passages = [Passage("a", "長い記事", "とても長い本文が続く。" * 30), GOLD]
    budget = 60  # cuts the first passage and drops the second: the count must agree to the token
    settings = engine_settings.model_copy(update={"context_token_budget": budget})
    pipeline = Pipeline(None, served.engine, settings)  # type: ignore[arg-type]
    served_prompt = pipeline.prompt_for("日本一高い山は？", passages, prompt_format=prompt_format)
    prompter = Prompter(prompt_format, tokenizer)
    training_prompt = make_prompt("日本一高い山は？", passages, TokenCounter(tokenizer), budget, prompter)
    assert training_prompt == served_prompt.text
    assert (served_prompt.passages, served_prompt.last_cut) == (1, True)
    assert "とても長い本文" in training_prompt and "3776" not in training_prompt


def test_training_tokens_are_the_served_tokens(tiny_gemma, examples_file, served):
    """TRL tokenizes the prompt as vLLM does, and the answer starts on a token boundary after it."""
    from transformers import AutoTokenizer

    from kotae.adapters.sft_examples import read_examples

    tokenizer = AutoTokenizer.from_pretrained(tiny_gemma)
    row = read_examples(examples_file).rows[0]
    prompt_ids = tokenizer(row.prompt)["input_ids"]
    full_ids = tokenizer(row.prompt + row.completion + tokenizer.eos_token)["input_ids"]
    assert full_ids[: len(prompt_ids)] == prompt_ids
    assert tokenizer.decode(full_ids[len(prompt_ids) :]) == row.completion + tokenizer.eos_token
    assert full_ids[-2] == tokenizer.convert_tokens_to_ids("\n\n")
    completion = served.run(served.engine.complete(row.prompt, Sampling(max_tokens=1)))
    assert completion.prompt_tokens == len(prompt_ids)


def _build(retriever, data, tokenizer, seed=0, prompter=DEFAULT_PROMPTER):
    from kotae.adapters.sft_examples import build_examples

    count_tokens = TokenCounter(tokenizer)
    index = retriever.index
    return build_examples(
        data, index.directory, index, retriever, "hybrid", count_tokens, prompter, 3, 200, seed
    )


def test_examples_hold_the_gold_chunk_and_retrieved_distractors(tiny_gemma, data_dir, retriever):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_gemma)
    built = _build(retriever, data_dir / "qa.jsonl", tokenizer)
    assert built.info.contexts.dropped == 1 and built.info.examples == 5
    assert "q3" not in {row.qid for row in built.rows}, "信濃川's answer straddles two chunks"
    for row in built.rows:
        assert row.answers[0] in row.prompt and row.completion == row.answers[0] + "\n\n"
        assert len(row.passage_ids) == 3 and len(set(row.passage_ids)) == 3
    horyuji = next(row for row in built.rows if row.qid == "q4")
    assert "p4#2" in horyuji.passage_ids and "p4#1" not in horyuji.passage_ids
    assert built.rows == _build(retriever, data_dir / "qa.jsonl", tokenizer).rows, "seeded"


def test_missing_gold_passage_names_file_and_line(tiny_gemma, tmp_path, retriever):
    from transformers import AutoTokenizer

    from kotae.core.errors import InputError

    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        '{"question": "富士山は？", "answers": ["富士山"], "gold_passage_ids": ["p1"]}\n'
        '{"question": "何？", "answers": ["何か"], "gold_passage_ids": ["nowhere"]}\n',
        encoding="utf-8",
    )
    with pytest.raises(InputError, match=r"qa.jsonl:2: gold passage 'nowhere' is not in the index"):
        _build(retriever, qa, AutoTokenizer.from_pretrained(tiny_gemma))


def test_built_prompts_are_what_the_pipeline_serves(tiny_gemma, data_dir, retriever, engine_settings, served):
    from transformers import AutoTokenizer

    pipeline = Pipeline(Collections.of(retriever), served.engine, engine_settings)
    for row in _build(retriever, data_dir / "qa.jsonl", AutoTokenizer.from_pretrained(tiny_gemma)).rows:
        passages = [retriever.index.passage(pid) for pid in row.passage_ids]
        assert pipeline.prepare_many([row.question], given=[passages])[0].prompt == row.prompt


def test_train_examples_command_writes_what_the_library_builds(
    tiny_gemma, data_dir, index_dir, retriever, tmp_path, invoke_train
):
    from transformers import AutoTokenizer

    from kotae.adapters.sft_examples import read_examples

    out = tmp_path / "examples.jsonl.gz"
    args = ["examples", "--base", str(tiny_gemma), "--data", str(data_dir / "qa.jsonl")]
    args += ["--index", str(index_dir / "index"), "--out", str(out), "--contexts", "3", "--seed", "0"]
    invoke_train(args)
    expected = _build(retriever, data_dir / "qa.jsonl", AutoTokenizer.from_pretrained(tiny_gemma))
    assert read_examples(out).rows == expected.rows


@pytest.mark.slow
def test_sft_mixes_an_alpaca_set_with_qa_in_the_chosen_prompt_format(
    tiny_gemma, data_dir, index_dir, tmp_path, invoke_train
):
    from kotae.adapters.metadata import read_metadata

    out = tmp_path / "adapter"
    args = ["sft", "--base", str(tiny_gemma), "--data", str(data_dir / "qa.jsonl"), "--mix", str(ALPACA)]
    args += ["--index", str(index_dir / "index"), "--contexts", "3", "--prompt-format", "chat-template"]
    args += ["--out", str(out), "--max-steps", "1", "--batch-size", "4", "--grad-accumulation", "1"]
    args += ["--eval-fraction", "0", "--probe-every", "0"]
    output = invoke_train(args)
    assert "6 instruction examples" in output
    metadata = read_metadata(out)
    assert metadata.prompt_format == "chat-template"
    assert (metadata.data.rows, [ref.rows for ref in metadata.mixed]) == (6, [6])
    assert metadata.mixed[0].path == str(ALPACA.resolve()) and metadata.contexts is not None
