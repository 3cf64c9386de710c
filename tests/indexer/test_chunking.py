"""Chunking: sentence ends, the length limit, hard splits, ids and titles."""

from kotae.core.passage import Passage
from kotae.indexer.chunking import Document, chunk_document, chunk_text, indexed_text, split_sentences


def test_sentences_end_at_marks_and_newlines() -> None:
    text = "一文目。「二文目！」と言った？\n改行で終わる行\n\n最後"
    assert split_sentences(text) == ["一文目。", "「二文目！」", "と言った？\n", "改行で終わる行\n", "最後"]


def test_sentences_are_packed_up_to_the_limit() -> None:
    sentences = ["あ" * 9 + "。"] * 5  # 10 characters each
    assert chunk_text("".join(sentences), 25) == ["あ" * 9 + "。" + "あ" * 9 + "。"] * 2 + ["あ" * 9 + "。"]
    assert chunk_text("".join(sentences), 50) == ["".join(sentences)]


def test_chunks_keep_paragraph_breaks_inside_and_trim_their_ends() -> None:
    assert chunk_text("  一行目。\n二行目。\n", 100) == ["一行目。\n二行目。"]


def test_a_sentence_longer_than_the_limit_is_cut_hard() -> None:
    long_sentence = "い" * 25 + "。"
    chunks = chunk_text("前。" + long_sentence + "後。", 10)
    assert chunks == ["前。", "い" * 10, "い" * 10, "いいいいい。後。"]
    assert all(len(chunk) <= 10 for chunk in chunks)


def test_short_document_keeps_its_id_and_long_one_numbers_chunks() -> None:
    short = Document("doc-1", "題", ("短い本文。",), "x:1")
    assert chunk_document(short, 400) == [Passage("doc-1", "題", "短い本文。")]
    long = Document("記事", "記事", ("あ" * 30 + "。", "い" * 5 + "。"), "x (記事)")
    passages = chunk_document(long, 20)
    assert [p.id for p in passages] == ["記事#1", "記事#2", "記事#3"]
    assert {p.title for p in passages} == {"記事"}
    assert passages[-1].text == "い" * 5 + "。"  # sections are never merged


def test_empty_document_has_no_passages() -> None:
    assert chunk_document(Document("d", "t", ("", "  \n"), "x:1"), 400) == []


def test_indexed_text_leads_with_the_title() -> None:
    assert indexed_text(Passage("p", "東京", "首都である。")) == "東京\n首都である。"
