"""`benchmarks/jawiki_dump.py` on a small dump: the same bytes whatever the workers, bz2 multistream, read
by kotae's own reader and chunker as the right articles, no copies of real sentences, and made-up words in
place of the words that only one real article uses."""

import bz2
import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kotae.indexer.chunking import chunk_document, split_sentences
from kotae.indexer.sources import read_documents

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "jawiki_dump.py"
ARTICLES = 300
BLOCK = 100
# Markup that kotae's cleaner must have removed from every passage.
LEFTOVER = re.compile(r"\[\[|\]\]|\{\{|\}\}|<ref|'''|Category:")


def load_script():
    name = "kotae_jawiki_dump"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        module = importlib.util.module_from_spec(spec)
        # Worker processes find the script's functions and classes by module name when unpickling.
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def jawiki_dump() -> Iterator:
    """The script, its model trained in this process. The script trains it in a forked child, and a fork of a
    test worker, whose earlier tests may have left engine threads running, can wait forever on a lock one of
    them held (seen once on CI). Forked workers are tested through the command, in a process of its own."""
    module = load_script()
    if not module.DEFAULT_PARAGRAPHS.exists():
        pytest.skip("../shared/data is not here")
    model = module.train(module.DEFAULT_PARAGRAPHS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "load_model", lambda paragraphs: model)
        yield module


@pytest.fixture(scope="module")
def dump(jawiki_dump, tmp_path_factory) -> tuple[Path, object]:
    path = tmp_path_factory.mktemp("dump") / "jawiki.xml.bz2"
    summary = jawiki_dump.write_dump(path, ARTICLES, seed=3, workers=1, block_articles=BLOCK)
    return path, summary


def test_bytes_depend_on_the_seed_only(jawiki_dump, dump, tmp_path):
    path, summary = dump
    again = tmp_path / "again.xml.bz2"
    parallel = tmp_path / "parallel.xml.bz2"
    assert jawiki_dump.write_dump(again, ARTICLES, seed=3, workers=1, block_articles=BLOCK) == summary
    arguments = ["--articles", str(ARTICLES), "--seed", "3", "--workers", "2", "--block-articles", str(BLOCK)]
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(parallel), *arguments], check=True)
    assert again.read_bytes() == path.read_bytes() == parallel.read_bytes()
    assert not (tmp_path / "parallel.xml.bz2.tmp").exists()
    other = tmp_path / "other.xml.bz2"
    jawiki_dump.write_dump(other, ARTICLES, seed=4, workers=1, block_articles=BLOCK)
    assert other.read_bytes() != path.read_bytes()


def test_each_block_is_a_bz2_stream(dump):
    path, summary = dump
    data = path.read_bytes()
    streams = []
    while data:
        decompressor = bz2.BZ2Decompressor()
        streams.append(decompressor.decompress(data))
        data = decompressor.unused_data
    # The header, one stream per block of 100 articles, the closing tag.
    assert len(streams) == 2 + ARTICLES // BLOCK
    assert streams[0].startswith(b'<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/"')
    assert streams[-1] == b"</mediawiki>\n"
    xml = b"".join(streams)
    assert bz2.decompress(path.read_bytes()) == xml
    assert xml.count(b"<page>") == summary.pages > summary.articles == ARTICLES
    assert summary.bytes == path.stat().st_size


def test_kotae_reads_the_articles_and_skips_the_other_pages(dump, jawiki_dump):
    path, summary = dump
    xml = bz2.decompress(path.read_bytes()).decode()
    # The pages kotae must skip are there: redirects, and the project and category namespaces.
    assert "<redirect title=" in xml and "#REDIRECT [[" in xml
    assert "<ns>4</ns>" in xml and "<ns>14</ns>" in xml
    titles = re.findall(r"<title>(.*?)</title>", xml)
    assert len(titles) == len(set(titles)) == summary.pages

    documents = list(read_documents(path))
    assert len(documents) == ARTICLES
    assert len({document.id for document in documents}) == ARTICLES
    assert not any(":" in document.title for document in documents)
    assert (
        not {document.title for document in documents}
        & jawiki_dump.load_model(jawiki_dump.DEFAULT_PARAGRAPHS).real_titles
    )
    passages = [passage for document in documents for passage in chunk_document(document, 400)]
    assert all(0 < len(passage.text) <= 400 for passage in passages)
    assert not [passage.text for passage in passages if LEFTOVER.search(passage.text)]
    # 300 articles give the mean within about 0.2 (two standard errors).
    assert abs(len(passages) / ARTICLES - jawiki_dump.PASSAGES_PER_ARTICLE) < 0.4


def test_no_real_sentence_is_copied(dump, jawiki_dump):
    path, _summary = dump
    text = "\n".join(section for document in read_documents(path) for section in document.sections)
    real: set[str] = set()
    with jawiki_dump.DEFAULT_PARAGRAPHS.open(encoding="utf-8") as lines:
        for line in lines:
            for sentence in split_sentences(json.loads(line)["text"]):
                sentence = sentence.strip()
                if len(sentence) > 30 and "。" in sentence[-3:]:
                    real.add(sentence)
    lengths = sorted({len(sentence) for sentence in real})
    # Every place a real sentence could end (after 。 or a bracket closing after it), every length.
    ends = [match.end() for match in re.finditer(r"。[」』）)]*", text)]
    copies = [
        text[end - n : end] for end in ends for n in lengths if n <= end and text[end - n : end] in real
    ]
    assert len(real) > 10_000
    assert copies == []


def passage_text(path: Path) -> str:
    documents = read_documents(path)
    return "\n".join(passage.text for document in documents for passage in chunk_document(document, 400))


def test_article_specific_words_are_made_up(dump, jawiki_dump, tmp_path):
    path, _summary = dump
    model = jawiki_dump.load_model(jawiki_dump.DEFAULT_PARAGRAPHS)
    own = [model.words[word] for word in np.flatnonzero(model.own_words >= 0)]
    made_up = set(model.made_up.ravel().tolist())
    assert len(own) > 50_000 and not made_up & set(model.words)
    assert len(made_up) > 0.9 * model.made_up.size
    shared = tmp_path / "shared.xml.bz2"
    jawiki_dump.write_dump(shared, ARTICLES, seed=3, workers=1, block_articles=BLOCK, own_topics=False)
    # Words as the chain cuts them (runs of one script), so that a longer real word holding one is not one.
    own_set = set(own)
    spread = sum(token in own_set for token in jawiki_dump._TOKEN.findall(passage_text(shared)))
    kept = sum(token in own_set for token in jawiki_dump._TOKEN.findall(passage_text(path)))
    assert spread > 500 and kept * 20 < spread


def test_a_word_keeps_its_made_up_form_within_an_article(jawiki_dump):
    articles = np.arange(4_000)
    words = np.full(4_000, 12_345)
    variants = jawiki_dump._own_variant(articles, words)
    assert np.array_equal(variants, jawiki_dump._own_variant(articles, words))
    counts = np.bincount(variants, minlength=jawiki_dump.OWN_WORD_VARIANTS)
    assert len(counts) == jawiki_dump.OWN_WORD_VARIANTS and counts.min() > 150
    assert len(set(jawiki_dump._own_variant(np.full(50, 7), np.arange(50)).tolist())) > 1


def test_command_line(jawiki_dump, tmp_path, capsys):
    out = tmp_path / "cli.xml.bz2"
    assert jawiki_dump.main(["--out", str(out), "--articles", "20", "--workers", "1"]) == 0
    assert "20 articles" in capsys.readouterr().err
    assert sum(1 for _ in read_documents(out)) == 20
