"""Negative SFT examples: the served prompt over passages retrieved without the gold article, answered with
the fixed abstention text."""

import pytest
from brief_runs import brief_sft

from kotae.adapters.negatives import negative_examples
from kotae.core.errors import KotaeError
from kotae.core.qa_jsonl import read_qa_jsonl
from kotae.indexer.chunking import document_id
from kotae.rag.abstention import NO_ANSWER
from kotae.rag.pipeline import make_prompt
from kotae.rag.prompt import DEFAULT_PROMPTER
from kotae.rag.token_counter import TokenCounter
from kotae.rag.unanswerable import NOANS_SUFFIX


@pytest.fixture(scope="module")
def count_tokens(tiny_gemma):
    from transformers import AutoTokenizer

    return TokenCounter(AutoTokenizer.from_pretrained(tiny_gemma))


def test_negatives_lack_the_gold_article_and_answer_the_fixed_text(data_dir, retriever, count_tokens):
    items = [item for _, item in read_qa_jsonl(data_dir / "qa.jsonl")]
    golds = {item.qid: item.gold_passage_ids[0] for item in items}
    negatives = negative_examples(items, retriever, count_tokens, DEFAULT_PROMPTER, 3, 200, 0.5, seed=0)
    assert len(negatives) == 3 and len({row.qid for row in negatives}) == 3
    for row in negatives:
        gold = golds[row.qid.removesuffix(NOANS_SUFFIX)]
        assert len(row.passage_ids) == 3 and all(document_id(pid) != gold for pid in row.passage_ids)
        assert row.completion == NO_ANSWER + "\n\n" and row.answers == [NO_ANSWER]
        passages = [retriever.index.passage(pid) for pid in row.passage_ids]
        assert row.prompt == make_prompt(row.question, passages, count_tokens, 200, DEFAULT_PROMPTER), (
            "the served prompt"
        )
    assert (
        negative_examples(items, retriever, count_tokens, DEFAULT_PROMPTER, 3, 200, 0.5, seed=0) == negatives
    ), "seeded"
    assert negative_examples(items, retriever, count_tokens, DEFAULT_PROMPTER, 3, 200, 0.0, seed=0) == []


def test_the_share_of_negatives_is_a_fraction(data_dir, retriever, count_tokens):
    items = [item for _, item in read_qa_jsonl(data_dir / "qa.jsonl")]
    with pytest.raises(KotaeError, match="between 0 and 1"):
        negative_examples(items, retriever, count_tokens, DEFAULT_PROMPTER, 3, 200, 1.5, seed=0)


@pytest.mark.slow  # trains briefly on the CPU
def test_train_examples_command_mixes_in_negatives(tiny_gemma, data_dir, index_dir, tmp_path, invoke_train):
    from kotae.adapters.metadata import read_metadata
    from kotae.adapters.sft_examples import BuiltExamples, read_examples, write_examples

    out = tmp_path / "examples.jsonl"
    args = ["examples", "--base", str(tiny_gemma), "--data", str(data_dir / "qa.jsonl")]
    invoke_train([*args, "--index", str(index_dir / "index"), "--out", str(out), "--negatives", "0.5"])
    built = read_examples(out)
    negatives = [row for row in built.rows if row.qid and row.qid.endswith(NOANS_SUFFIX)]
    assert (len(built.rows), len(negatives), built.info.examples) == (5 + 3, 3, 8)
    assert all(row.completion == NO_ANSWER + "\n\n" for row in negatives)
    assert built.info.negatives == 0.5

    # The adapter trained on them records the share; asking for negatives again is refused.
    metadata = brief_sft(tiny_gemma, tmp_path / "abstains", out)
    assert metadata.hyperparameters["negatives"] == 0.5
    with pytest.raises(KotaeError, match="hold their own"):
        brief_sft(tiny_gemma, tmp_path / "again", out, negatives=0.2)

    # Two examples files train together (another QA set's, say, here without negatives): the adapter names
    # both and records their share of negatives, weighted by their answerable examples.
    answerable = out.with_name("answerable.jsonl")
    positives = [row for row in built.rows if row not in negatives]
    write_examples(answerable, BuiltExamples(positives, built.info.model_copy(update={"negatives": 0.0})))
    mixed = tmp_path / "mixed"
    both = ["--examples", str(out), "--examples", str(answerable)]
    brief = ["--max-steps", "2", "--batch-size", "6", "--eval-fraction", "0", "--probe-every", "0"]
    invoke_train(["sft", "--base", str(tiny_gemma), *both, "--out", str(mixed), *brief])
    metadata = read_metadata(mixed)
    assert (metadata.data.path, metadata.data.rows) == (str(out.resolve()), 8)
    assert [(ref.path, ref.rows) for ref in metadata.mixed] == [(str(answerable.resolve()), 5)]
    assert metadata.hyperparameters["negatives"] == 0.25
