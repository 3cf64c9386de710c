"""A stand-in for the Japanese Wikipedia dump: a MediaWiki XML export, bz2 multistream, of made-up articles
whose words and sentence shapes come from the real paragraphs of jawiki-paragraphs.jsonl.

    python benchmarks/jawiki_dump.py --out /tmp/jawiki-5m.xml.bz2
    kotae index build /tmp/jawiki-5m.xml.bz2 ../shared/data/jawiki-paragraphs.jsonl --out … --type ivfpq

The sentences are drawn from a word-level Markov chain (order 2, backing off to order 1 at random steps)
trained on the real paragraphs, cut into words by script changes (kanji, hiragana, katakana, latin,
digits, punctuation). A drawn sentence that ends in a whole real sentence is thrown away, so the dump
copies no real sentence but short ones: copies would be false answers to the QA sets' questions. The real
paragraphs themselves are not in the dump either: index it together with jawiki-paragraphs.jsonl, as
above, so that they keep their ids and the QA sets' gold passage ids still point at them.

Each stand-in article has topics of its own, as a real one does: a word that only one real article uses
(a kanji or katakana run, counted by title) is replaced, the same way throughout a stand-in article, by a
made-up word of the same script and length from a pool of OWN_WORD_VARIANTS per real word, none a real word.
Words that two or more real articles use stay. With `--shared-topics`, every real article's names are
spread over all the stand-in articles at their sample frequency instead.

Each article has a unique title, a lead and 2-6 sections of 1-3 paragraphs, with the markup kotae's
cleaner removes or unwraps (links, bold, infoboxes, <ref>, categories, a 脚注 section). A few redirects
and pages outside the article namespace are mixed in; kotae skips them.

Blocks of articles are generated and compressed in parallel, each from its own random stream (seeded by
the seed and the block number) and each as its own bz2 stream, so the file is the same byte for byte
whatever the number of workers.
"""

import argparse
import bz2
import concurrent.futures
import contextlib
import functools
import itertools
import json
import math
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

DEFAULT_PARAGRAPHS = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "jawiki-paragraphs.jsonl"
)
DEFAULT_ARTICLES = 1_300_000
BLOCK_ARTICLES = 5_000
# Passages per article when kotae chunks the dump at 400 characters (1.3M articles ≈ 5.5M passages),
# set by the section, paragraph and sentence counts below.
PASSAGES_PER_ARTICLE = 4.2

# Shares of extra pages, per article: redirects, and pages of the project (4) and category (14) namespaces.
REDIRECT_SHARE = 0.02
OTHER_NAMESPACE_SHARE = 0.005

# Article shape: sections after the lead, paragraphs per section, sentences per paragraph.
SECTION_COUNTS = np.arange(2, 7)
SECTION_WEIGHTS = np.array([0.5, 0.25, 0.12, 0.08, 0.05])
PARAGRAPH_COUNTS = np.arange(1, 4)
PARAGRAPH_WEIGHTS = np.array([0.55, 0.3, 0.15])
LEAD_SENTENCES = np.arange(1, 5)
LEAD_WEIGHTS = np.array([0.3, 0.35, 0.25, 0.1])
SENTENCE_COUNTS = np.arange(1, 6)
SENTENCE_WEIGHTS = np.array([0.25, 0.3, 0.25, 0.12, 0.08])

# Markov chain: the chance of an order-1 step (looser text, fewer long runs of a real sentence),
# the longest sentence drawn in words, how many are drawn at once, and the lengths kept, in characters.
BACKOFF = 0.2
MAX_WORDS = 64
DRAW_BATCH = 32_768
MIN_SENTENCE_CHARS = 12
MAX_SENTENCE_CHARS = 160
# A drawn sentence ending in a real sentence at least this long is thrown away.
COPY_CHARS = 20

# Made-up words per real article-specific word: how many stand-in topics one real name turns into.
OWN_WORD_VARIANTS = 16

# Markup shares: of content words (links, piped links, bold), of sentences (<ref>), of articles.
LINK_SHARE = 0.06
PIPED_LINK_SHARE = 0.015
BOLD_SHARE = 0.004
REF_SHARE = 0.08
INFOBOX_SHARE = 0.3
SEE_ALSO_SHARE = 0.25

_BOS, _EOS = 0, 1
_KANJI = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff々〆ヵヶ"
_KATAKANA = "\u30a1-\u30fa\u30fc-\u30ff\uff66-\uff9f"
# Words are runs of one script; anything else is a word of one character.
_TOKEN = re.compile(
    rf"[{_KANJI}]+|[\u3041-\u309f]+|[{_KATAKANA}]+|[A-Za-zＡ-Ｚａ-ｚ]+|[0-9０-９]+|[ \t\u3000]+|.", re.S
)
_CONTENT_WORD = re.compile(rf"[{_KANJI}]{{2,8}}|[{_KATAKANA}]{{2,12}}")
_KATAKANA_WORD = re.compile(rf"[{_KATAKANA}]+")
# A sentence ends at 。 unless a closing bracket follows (then the 。 ends a quoted sentence inside it).
_SENTENCE = re.compile(r"(?:[^。]|。(?=[」』）)]))*。")
# Characters that are markup in wikitext, URLs (parsed as external links) and list markers at the start
# of a line: sentences with them are left out of training so that the generated text parses as prose.
_UNSAFE = re.compile(r"[\[\]{}|<>'=&*#~_]|https?:|://|^[:;]")
_HASH = np.uint64(0x100000001B3)
_FILTER_MASK = (1 << 22) - 1

_HEADINGS = (
    "概要", "歴史", "経歴", "来歴", "特徴", "人物", "作品", "地理", "文化", "評価", "構成", "沿革", "生涯",
    "活動", "影響", "背景", "設備", "交通", "産業", "教育", "登場人物", "あらすじ", "施設", "組織", "事業",
)  # fmt: skip
_PIPE_TARGETS = ("曖昧さ回避", "映画", "小説", "企業", "人物", "地名", "漫画", "楽曲", "政治家", "駅")
# A made-up word as plain text, link, piped link and bold, as Model.renderings has the real ones.
_MARKUP = ("{0}", "[[{0}]]", "[[{0} ({1})|{0}]]", "'''{0}'''")
_SITEINFO = """  <siteinfo>
    <sitename>Wikipedia</sitename>
    <dbname>jawiki</dbname>
    <base>https://ja.wikipedia.org/wiki/%E3%83%A1%E3%82%A4%E3%83%B3%E3%83%9A%E3%83%BC%E3%82%B8</base>
    <generator>MediaWiki 1.44.0-wmf.1</generator>
    <case>first-letter</case>
    <namespaces>
      <namespace key="-2" case="first-letter">メディア</namespace>
      <namespace key="-1" case="first-letter">特別</namespace>
      <namespace key="0" case="first-letter" />
      <namespace key="1" case="first-letter">ノート</namespace>
      <namespace key="2" case="first-letter">利用者</namespace>
      <namespace key="4" case="first-letter">Wikipedia</namespace>
      <namespace key="6" case="first-letter">ファイル</namespace>
      <namespace key="10" case="first-letter">Template</namespace>
      <namespace key="14" case="first-letter">Category</namespace>
    </namespaces>
  </siteinfo>
"""
_HEADER = (
    '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xsi:schemaLocation="http://www.mediawiki.org/xml/export-0.11/ '
    'http://www.mediawiki.org/xml/export-0.11.xsd" version="0.11" xml:lang="ja">\n' + _SITEINFO
)
_FOOTER = "</mediawiki>\n"


@dataclass(frozen=True, slots=True)
class DumpSummary:
    articles: int
    """Main-namespace pages that are not redirects: what kotae indexes."""
    pages: int
    """All pages, redirects and other namespaces included."""
    bytes: int
    """Size of the compressed file."""


@dataclass(frozen=True, slots=True)
class Model:
    """The Markov chain as flat arrays, for drawing many sentences at once.

    A row is an order-2 state (the last two words) or, after all of those, an order-1 one (the last word).
    A row's edges (the next word, and the order-2 state it leads to) lie together; `urn` holds each edge
    as many times as it was seen, row after row, so drawing an edge is one lookup at
    `row_start + random × row_total`."""

    words: list[str]
    renderings: np.ndarray
    """Each word plain, as a link, as a piped link and in bold (ids + 0, 1, 2, 3 × len(words)); the end
    of a sentence carries a NUL so that joined sentences split apart again."""
    word_chars: np.ndarray
    content: np.ndarray
    """Ids of the words fit for titles, headings and links."""
    content_mask: np.ndarray
    content_weights: np.ndarray
    start: int
    """The row of a sentence's start."""
    backoff_row: np.ndarray
    """The order-1 row of each order-2 state."""
    row_start: np.ndarray
    row_total: np.ndarray
    urn: np.ndarray
    edge_word: np.ndarray
    edge_state: np.ndarray
    """The order-2 row after the edge; -1 after the end of a sentence."""
    real_hashes: np.ndarray
    """Sorted hashes of the word sequences of real sentences of at least COPY_CHARS characters."""
    real_filter: np.ndarray
    """real_hashes' low bits as a bitmap, to check most drawn sentences without a search."""
    real_titles: frozenset[str]
    own_words: np.ndarray
    """For each word, its row of `made_up` when only one real article uses it, else -1."""
    made_up: np.ndarray
    """OWN_WORD_VARIANTS made-up words (strings) per article-specific word, of its script and length."""


@functools.lru_cache(maxsize=2)
def load_model(paragraphs: Path) -> Model:
    """train(), run in a child process: training leaves a large freed and scattered heap behind, which
    forked workers would copy page by page as they allocate into it."""
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as executor:
        return executor.submit(train, paragraphs).result()


def train(paragraphs: Path) -> Model:
    """The chain of the real paragraphs' sentences (those without characters that are wiki markup)."""
    paragraph_rows = _read_paragraphs(paragraphs)
    sentences, real_titles = _real_sentences(paragraph_rows)
    tokenized = [_TOKEN.findall(sentence[:-1]) for sentence in sentences]
    words = ["", "。", *sorted({word for tokens in tokenized for word in tokens})]
    ids = {word: number for number, word in enumerate(words)}
    vocabulary = len(words)
    lengths = np.fromiter(map(len, tokenized), np.int64, len(tokenized))
    word_ids = np.fromiter(map(ids.__getitem__, itertools.chain.from_iterable(tokenized)), np.int64)

    # All sentences laid end to end, each as two starts, its words and the end; then every position
    # after the starts as (word before last, last word, next word).
    ends = np.cumsum(lengths + 3)
    begins = ends - lengths - 3
    flat = np.full(ends[-1], _BOS, np.int64)
    flat[ends - 1] = _EOS
    flat[_spread(begins + 2, lengths)] = word_ids
    position = np.setdiff1d(np.arange(len(flat)), np.concatenate((begins, begins + 1)), assume_unique=True)
    first, second, third = flat[position - 2], flat[position - 1], flat[position]

    triples, counts2 = np.unique((first * vocabulary + second) * vocabulary + third, return_counts=True)
    pair_keys = triples // vocabulary
    states, owner2 = np.unique(pair_keys, return_inverse=True)
    word2 = triples % vocabulary
    pairs, counts1 = np.unique(second * vocabulary + third, return_counts=True)
    word1 = pairs % vocabulary
    owner = np.concatenate((owner2, len(states) + pairs // vocabulary))
    counts = np.concatenate((counts2, counts1))
    row_end = np.searchsorted(owner, np.arange(len(states) + vocabulary), side="right")
    row_begin = np.concatenate(([0], row_end[:-1]))
    cum = np.concatenate(([0], np.cumsum(counts)))

    frequency = np.bincount(flat, minlength=vocabulary)
    content = np.array(
        [
            number
            for number, word in enumerate(words)
            if frequency[number] > 1 and _CONTENT_WORD.fullmatch(word)
        ],
        np.int64,
    )
    content_mask = np.zeros(vocabulary, bool)
    content_mask[content] = True
    weights = np.sqrt(frequency[content].astype(np.float64))

    # Real sentences long enough to matter and short enough to be drawn, as rows like _draw_rows' own.
    chars = np.fromiter(map(len, sentences), np.int64, len(sentences))
    long = (chars >= COPY_CHARS) & (lengths < MAX_WORDS)
    kept = lengths[long]
    rows = np.zeros((len(kept), MAX_WORDS), np.int32)
    rows[np.repeat(np.arange(len(kept)), kept), _spread(np.zeros_like(kept), kept)] = word_ids[
        np.repeat(long, lengths)
    ]
    rows[np.arange(len(kept)), kept] = _EOS
    real_hashes = np.unique(_suffix_hashes(rows)[:, 0])
    real_filter = np.zeros(_FILTER_MASK + 1, bool)
    real_filter[(real_hashes & np.uint64(_FILTER_MASK)).astype(np.intp)] = True

    own_words, made_up = _made_up_words(paragraph_rows, words)

    plain = list(words)
    plain[_EOS] = "。\0"
    piped = [
        f"[[{word} ({_PIPE_TARGETS[number % len(_PIPE_TARGETS)]})|{word}]]"
        for number, word in enumerate(plain)
    ]
    return Model(
        words=words,
        renderings=np.array(
            plain + [f"[[{word}]]" for word in plain] + piped + [f"'''{word}'''" for word in plain], object
        ),
        word_chars=np.array([len(word) for word in words], np.int64),
        content=content,
        content_mask=content_mask,
        content_weights=weights / weights.sum(),
        start=int(np.searchsorted(states, _BOS * vocabulary + _BOS)),
        backoff_row=(len(states) + states % vocabulary).astype(np.int32),
        row_start=cum[row_begin].astype(np.int32),
        row_total=(cum[row_end] - cum[row_begin]).astype(np.int32),
        urn=np.repeat(np.arange(len(counts), dtype=np.int32), counts),
        edge_word=np.concatenate((word2, word1)).astype(np.int32),
        edge_state=np.concatenate(
            (
                _state_of(states, (pair_keys % vocabulary) * vocabulary + word2, word2),
                _state_of(states, pairs, word1),
            )
        ),
        real_hashes=real_hashes,
        real_filter=real_filter,
        real_titles=frozenset(real_titles),
        own_words=own_words,
        made_up=made_up,
    )


def _read_paragraphs(paragraphs: Path) -> list[tuple[str, str]]:
    """Each paragraph's title and text."""
    with paragraphs.open(encoding="utf-8") as lines:
        return [(row["title"], row["text"]) for row in map(json.loads, filter(str.strip, lines))]


def _real_sentences(rows: list[tuple[str, str]]) -> tuple[list[str], set[str]]:
    """The distinct sentences of the paragraphs that hold no markup characters, sorted; and the titles."""
    sentences: set[str] = set()
    for _title, text in rows:
        for text_line in text.splitlines():
            for sentence in _SENTENCE.findall(text_line):
                sentence = sentence.strip()
                if len(sentence) > 1 and not _UNSAFE.search(sentence):
                    sentences.add(sentence)
    return sorted(sentences), {title for title, _text in rows}


def _made_up_words(rows: list[tuple[str, str]], words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Model.own_words and Model.made_up: the content words that only one real article (title) uses and,
    for each, OWN_WORD_VARIANTS words of its script and length whose characters are drawn as often as
    that script's article-specific words use them; none is a real word. Deterministic."""
    titles: dict[str, set[str]] = {}
    for title, text in rows:
        for word in _CONTENT_WORD.findall(text):
            titles.setdefault(word, set()).add(title)
    ids = [
        number
        for number, word in enumerate(words)
        if _CONTENT_WORD.fullmatch(word) and len(titles.get(word, ())) == 1
    ]
    own = [words[number] for number in ids]
    own_words = np.full(len(words), -1, np.int32)
    own_words[ids] = np.arange(len(ids), dtype=np.int32)
    made_up = np.empty((len(own), OWN_WORD_VARIANTS), object)
    real = set(words)
    rng = np.random.default_rng(0x6B6F746165)
    katakana = np.array([_KATAKANA_WORD.fullmatch(word) is not None for word in own])
    lengths = np.array([len(word) for word in own])
    for script in (False, True):
        characters, counts = np.unique(
            list("".join(word for word, kind in zip(own, katakana, strict=True) if kind == script)),
            return_counts=True,
        )
        # No made-up word starts with the long vowel mark.
        starts = characters != "ー"
        # A draw that is a real word takes the next character of its script at its end until it is not.
        following = dict(zip(characters, np.roll(characters, -1), strict=True))
        for length in np.unique(lengths[katakana == script]):
            group = np.flatnonzero((katakana == script) & (lengths == length))
            drawn = rng.choice(characters, (len(group), OWN_WORD_VARIANTS, length), p=counts / counts.sum())
            drawn[:, :, 0] = rng.choice(
                characters[starts], drawn.shape[:2], p=counts[starts] / counts[starts].sum()
            )
            strings = np.ascontiguousarray(drawn).view(f"<U{length}")[..., 0].astype(object)
            for place in zip(*np.nonzero(np.vectorize(real.__contains__)(strings)), strict=True):
                while strings[place] in real:
                    strings[place] = strings[place][:-1] + following[strings[place][-1]]
            made_up[group] = strings
    return own_words, made_up


def _spread(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """starts[i], starts[i] + 1, …, starts[i] + lengths[i] - 1 for every i, laid end to end."""
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + offsets


def _state_of(states: np.ndarray, keys: np.ndarray, next_words: np.ndarray) -> np.ndarray:
    """Order-2 row of each (last word, next word) pair; -1 after the end of a sentence."""
    found = np.minimum(np.searchsorted(states, keys), len(states) - 1)
    result = np.where(next_words == _EOS, -1, found).astype(np.int32)
    if np.any(states[found[result >= 0]] != keys[result >= 0]):
        raise AssertionError("a word pair of the chain has no state")
    return result


def _suffix_hashes(rows: np.ndarray) -> np.ndarray:
    """A hash of every suffix of every row of word ids (0 is padding and hashes to 0)."""
    hashes = np.zeros(rows.shape, np.uint64)
    values = np.where(rows > 0, rows + 1, 0).astype(np.uint64)
    following = np.zeros(len(rows), np.uint64)
    with np.errstate(over="ignore"):
        for column in range(rows.shape[1] - 1, -1, -1):
            following = values[:, column] + _HASH * following
            hashes[:, column] = following
    return hashes


def _draw_rows(model: Model, rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` sentences as rows of word ids ending in _EOS, padded with 0; a row not ended by MAX_WORDS
    is all 0."""
    rows = np.zeros((count, MAX_WORDS), np.int32)
    active = np.arange(count)
    state = np.full(count, model.start, np.int32)
    for column in range(MAX_WORDS):
        row = np.where(rng.random(len(active)) < BACKOFF, model.backoff_row[state], state)
        draw = (rng.random(len(active)) * model.row_total[row]).astype(np.int32)
        edge = model.urn[model.row_start[row] + draw]
        word = model.edge_word[edge]
        rows[active, column] = word
        going = word != _EOS
        active, state = active[going], model.edge_state[edge[going]]
        if len(active) == 0:
            break
    rows[active] = 0
    return rows


def _sentences(
    model: Model, rng: np.random.Generator, count: int, articles: np.ndarray | None = None
) -> list[str]:
    """`count` generated sentences with word-level markup (links, bold), none ending in a real sentence;
    drawn a batch at a time so that memory stays small. `articles`: each sentence's article number, whose
    made-up words replace the article-specific real ones; None keeps the real words."""
    sentences: list[str] = []
    while len(sentences) < count:
        rows = _draw_rows(model, rng, min(DRAW_BATCH, int((count - len(sentences)) * 1.2) + 64))
        chars = model.word_chars[rows].sum(axis=1)
        hashes = _suffix_hashes(rows)
        suspect, column = np.nonzero(model.real_filter[(hashes & np.uint64(_FILTER_MASK)).astype(np.intp)])
        copied = np.zeros(len(rows), bool)
        copied[suspect[np.isin(hashes[suspect, column], model.real_hashes)]] = True
        rows = rows[(chars >= MIN_SENTENCE_CHARS) & (chars <= MAX_SENTENCE_CHARS) & ~copied]
        rows = rows[: count - len(sentences)]
        words = rows[rows > 0].astype(np.int64)
        # Markup of content words: 1 link, 2 piped link, 3 bold (see Model.renderings).
        draw = rng.random(len(words))
        variant = np.select(
            [draw < LINK_SHARE, draw < LINK_SHARE + PIPED_LINK_SHARE, draw >= 1 - BOLD_SHARE], [1, 2, 3], 0
        )
        markup = np.where(model.content_mask[words], variant, 0)
        texts = model.renderings[words + len(model.words) * markup]
        if articles is not None:
            mine = np.flatnonzero(model.own_words[words] >= 0)
            sentence_of = np.repeat(np.arange(len(rows)), (rows > 0).sum(axis=1))[mine]
            own = model.own_words[words[mine]]
            made = model.made_up[own, _own_variant(articles[len(sentences) + sentence_of], words[mine])]
            texts[mine] = [
                _MARKUP[kind].format(word, _PIPE_TARGETS[row % len(_PIPE_TARGETS)])
                for kind, word, row in zip(markup[mine].tolist(), made.tolist(), own.tolist(), strict=True)
            ]
        sentences += "".join(texts.tolist()).split("\0")[:-1]
    return sentences


def _own_variant(articles: np.ndarray, words: np.ndarray) -> np.ndarray:
    """Which of its made-up words an article-specific word becomes in each article: the same throughout
    one article, spread evenly over the articles."""
    with np.errstate(over="ignore"):
        mixed = articles.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ words.astype(
            np.uint64
        ) * np.uint64(0xBF58476D1CE4E5B9)
    return ((mixed >> np.uint64(32)) % np.uint64(OWN_WORD_VARIANTS)).astype(np.intp)


def _title_words(model: Model, rng: np.random.Generator, count: int, own_topics: bool) -> list[str]:
    """Content words for titles, headings, links and references; with `own_topics`, an article-specific
    one is one of its made-up words."""
    drawn = rng.choice(model.content, count, p=model.content_weights)
    if not own_topics:
        return [model.words[word] for word in drawn]
    own = model.own_words[drawn]
    picks = rng.integers(0, OWN_WORD_VARIANTS, count)
    return [
        model.words[word] if row < 0 else model.made_up[row, pick]
        for word, row, pick in zip(drawn.tolist(), own.tolist(), picks.tolist(), strict=True)
    ]


def make_titles(model: Model, seed: int, count: int, own_topics: bool = True) -> list[str]:
    """`count` distinct titles, none a real article's title: one, two or three words, "AのB" or "A・B",
    with "（2）", "（3）", … after a title already taken."""
    rng = np.random.default_rng([seed, 1 << 32])
    first = _title_words(model, rng, count, own_topics)
    second = _title_words(model, rng, count, own_topics)
    third = _title_words(model, rng, count, own_topics)
    shape = rng.choice(5, count, p=[0.08, 0.5, 0.2, 0.12, 0.1]).tolist()
    taken = set(model.real_titles)
    next_number: dict[str, int] = {}
    titles = []
    for a, b, c, kind in zip(first, second, third, shape, strict=True):
        title = (a, a + b, f"{a}の{b}", f"{a}・{b}", a + b + c)[kind]
        if title in taken:
            number = next_number.get(title, 2)
            while f"{title}（{number}）" in taken:
                number += 1
            next_number[title] = number + 1
            title = f"{title}（{number}）"
        taken.add(title)
        titles.append(title)
    return titles


@dataclass(frozen=True, slots=True)
class _Block:
    number: int
    seed: int
    titles: list[str]
    redirect_titles: list[str]
    others: int
    first_page_id: int
    own_topics: bool


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _page(title: str, namespace: int, page_id: int, wikitext: str, redirect: str | None = None) -> str:
    redirect_tag = f"    <redirect title={quoteattr(redirect)} />\n" if redirect is not None else ""
    return (
        f"  <page>\n    <title>{_escape(title)}</title>\n    <ns>{namespace}</ns>\n    <id>{page_id}</id>\n"
        f"{redirect_tag}    <revision>\n      <id>{page_id * 3 + 100_000_000}</id>\n"
        "      <timestamp>2025-01-01T00:00:00Z</timestamp>\n"
        "      <contributor>\n        <username>Kotae-bench</username>\n        <id>1</id>\n"
        "      </contributor>\n      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
        f'      <text bytes="{len(wikitext.encode())}" xml:space="preserve">{_escape(wikitext)}</text>\n'
        "    </revision>\n  </page>\n"
    )


def _infobox(title: str, words: Iterator[str], year: int) -> str:
    return (
        "{{Infobox " + next(words) + "\n"
        f"| 名称 = {title}\n| 画像 = \n| 所在地 = [[{next(words)}]]\n| 種類 = {next(words)}\n"
        f"| 設立 = {{{{start date and age|{year}|4|1}}}}\n"
        f"| 関係 = [[{next(words)}]]、[[{next(words)}]]\n}}}}\n"
    )


def _ref(words: Iterator[str], year: int) -> str:
    return (
        f"<ref>{{{{Cite book|和書|author={next(words)}|title={next(words)}の{next(words)}"
        f"|publisher={next(words)}|year={year}|page={year % 300 + 1}}}}}</ref>"
    )


def _block_pages(model: Model, block: _Block) -> tuple[str, int]:
    """The XML of one block's pages, and how many pages it holds."""
    rng = np.random.default_rng([block.seed, block.number])
    count = len(block.titles)
    sections = rng.choice(SECTION_COUNTS, count, p=SECTION_WEIGHTS)
    paragraphs = rng.choice(PARAGRAPH_COUNTS, (count, SECTION_COUNTS[-1]), p=PARAGRAPH_WEIGHTS)
    paragraphs[np.arange(SECTION_COUNTS[-1]) >= sections[:, None]] = 0
    lead = rng.choice(LEAD_SENTENCES, count, p=LEAD_WEIGHTS).tolist()
    per_paragraph = rng.choice(SENTENCE_COUNTS, int(paragraphs.sum()), p=SENTENCE_WEIGHTS).tolist()
    # Each sentence's article: its lead, then its sections' paragraphs, article after article.
    article_paragraphs = paragraphs.sum(axis=1)
    paragraph_sentences = np.add.reduceat(per_paragraph, np.cumsum(article_paragraphs) - article_paragraphs)
    articles = np.repeat(block.first_page_id + np.arange(count), np.array(lead) + paragraph_sentences)
    sentences = _sentences(model, rng, sum(lead) + sum(per_paragraph), articles if block.own_topics else None)
    years = rng.integers(1850, 2025, len(sentences)).tolist()
    refs = np.flatnonzero(rng.random(len(sentences)) < REF_SHARE).tolist()
    headings = rng.choice(len(_HEADINGS) + 1, int(sections.sum())).tolist()
    infobox = (rng.random(count) < INFOBOX_SHARE).tolist()
    see_also = (rng.random(count) < SEE_ALSO_SHARE).tolist()
    categories = rng.integers(1, 4, count).tolist()
    # Words for references, infoboxes, headings not on the list, see-also links and categories.
    needed = 4 * len(refs) + 5 * sum(infobox) + headings.count(len(_HEADINGS)) + 2 * sum(see_also)
    words = iter(_title_words(model, rng, needed + 2 * sum(categories), block.own_topics))
    for index in refs:
        sentences[index] += _ref(words, years[index])

    articles: list[str] = []
    sentence = paragraph = heading = 0
    for number, title in enumerate(block.titles):
        end = sentence + lead[number]
        parts = [_infobox(title, words, years[sentence]) if infobox[number] else ""]
        parts.append(f"'''{title}'''は、" + "".join(sentences[sentence:end]))
        sentence = end
        for section in range(int(sections[number])):
            pick = headings[heading]
            heading += 1
            parts.append(f"\n\n== {_HEADINGS[pick] if pick < len(_HEADINGS) else next(words)} ==\n")
            texts = []
            for _ in range(int(paragraphs[number, section])):
                end = sentence + per_paragraph[paragraph]
                paragraph += 1
                texts.append("".join(sentences[sentence:end]))
                sentence = end
            parts.append("\n\n".join(texts))
        if any("<ref>" in part for part in parts):
            parts.append("\n\n== 脚注 ==\n{{Reflist}}")
        if see_also[number]:
            parts.append(f"\n\n== 関連項目 ==\n* [[{next(words)}]]\n* [[{next(words)}]]")
        parts.append(f"\n\n{{{{DEFAULTSORT:{title}}}}}\n")
        parts.append(
            "\n".join(f"[[Category:{next(words)}の{next(words)}]]" for _ in range(categories[number]))
        )
        articles.append("".join(parts))

    # Redirects to the block's articles, and pages of other namespaces named after them: each title is
    # unique because article titles are.
    targets = rng.integers(0, count, len(block.redirect_titles)).tolist()
    extras = [
        (title, 0, f"#REDIRECT [[{block.titles[target]}]]", block.titles[target])
        for title, target in zip(block.redirect_titles, targets, strict=True)
    ]
    for index, target in enumerate(rng.choice(count, block.others, replace=False).tolist()):
        name = block.titles[target]
        if (block.number + index) % 2:
            extras.append((f"Category:{name}", 14, f"[[{name}]]に関する記事。\n[[Category:{name}]]", None))
        else:
            extras.append((f"Wikipedia:査読依頼/{name}", 4, f"[[{name}]]の査読をお願いします。", None))
    # The extra pages go between the articles at random places.
    places = rng.integers(0, count + 1, len(extras))
    order = np.argsort(np.concatenate((np.arange(count) * 2 + 1, places * 2)), kind="stable").tolist()
    pages = []
    for page_id, item in enumerate(order, start=block.first_page_id):
        if item < count:
            pages.append(_page(block.titles[item], 0, page_id, articles[item]))
        else:
            title, namespace, text, redirect = extras[item - count]
            pages.append(_page(title, namespace, page_id, text, redirect))
    return "".join(pages), len(pages)


_MODEL: Model | None = None


def _init_worker(model: Model) -> None:
    global _MODEL
    _MODEL = model


def _compress_block(block: _Block) -> tuple[bytes, int]:
    assert _MODEL is not None
    xml, pages = _block_pages(_MODEL, block)
    return bz2.compress(xml.encode()), pages


def _blocks(model: Model, articles: int, seed: int, block_articles: int, own_topics: bool) -> list[_Block]:
    sizes = [min(block_articles, articles - start) for start in range(0, articles, block_articles)]
    redirects = [math.ceil(size * REDIRECT_SHARE) for size in sizes]
    titles = make_titles(model, seed, articles + sum(redirects), own_topics)
    blocks = []
    redirect_start = articles
    for number, size in enumerate(sizes):
        start = number * block_articles
        blocks.append(
            _Block(
                number=number,
                seed=seed,
                titles=titles[start : start + size],
                redirect_titles=titles[redirect_start : redirect_start + redirects[number]],
                others=min(size, math.ceil(size * OTHER_NAMESPACE_SHARE)),
                # Room for every page of a block, as real dumps leave gaps between page ids.
                first_page_id=number * 2 * block_articles + 1,
                own_topics=own_topics,
            )
        )
        redirect_start += redirects[number]
    return blocks


def write_dump(
    out: Path,
    articles: int,
    seed: int = 0,
    workers: int = 1,
    paragraphs: Path = DEFAULT_PARAGRAPHS,
    block_articles: int = BLOCK_ARTICLES,
    own_topics: bool = True,
) -> DumpSummary:
    """Writes the dump to `out` (through `out`.tmp): a header stream, one bz2 stream per block of
    `block_articles` articles, a closing stream. The same bytes for the same arguments whatever `workers`.
    `own_topics`: article-specific real words become made-up ones (see the module's docstring)."""
    if articles < 1 or block_articles < 1:
        raise ValueError("articles and block_articles must be positive")
    model = load_model(paragraphs)
    temporary = out.with_name(out.name + ".tmp")
    workers = min(workers, -(-articles // block_articles))
    with contextlib.ExitStack() as stack:
        if workers > 1:
            # Forked before the titles exist, so the workers hold only the model (shared, not copied).
            pool = stack.enter_context(
                multiprocessing.get_context("fork").Pool(workers, _init_worker, (model,))
            )
            blocks = _blocks(model, articles, seed, block_articles, own_topics)
            results: Iterator[tuple[bytes, int]] = pool.imap(_compress_block, blocks)
        else:
            _init_worker(model)
            results = map(_compress_block, _blocks(model, articles, seed, block_articles, own_topics))
        pages = 0
        with temporary.open("wb") as stream:
            stream.write(bz2.compress(_HEADER.encode()))
            for data, count in results:
                stream.write(data)
                pages += count
            stream.write(bz2.compress(_FOOTER.encode()))
    os.replace(temporary, out)
    return DumpSummary(articles=articles, pages=pages, bytes=out.stat().st_size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the dump to write (.xml.bz2)")
    parser.add_argument("--articles", type=int, default=DEFAULT_ARTICLES, help="main-namespace articles")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes generating blocks"
    )
    parser.add_argument(
        "--paragraphs", type=Path, default=DEFAULT_PARAGRAPHS, help="real paragraphs to learn words from"
    )
    parser.add_argument("--block-articles", type=int, default=BLOCK_ARTICLES, help="articles per bz2 stream")
    parser.add_argument(
        "--shared-topics",
        action="store_true",
        help="keep every real word, article-specific ones included",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    summary = write_dump(
        args.out,
        args.articles,
        args.seed,
        args.workers,
        args.paragraphs,
        args.block_articles,
        own_topics=not args.shared_topics,
    )
    seconds = time.perf_counter() - started
    print(
        f"{args.out}: {summary.articles:,} articles ({summary.pages:,} pages), "
        f"{summary.bytes:,} bytes, {seconds:.1f} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
