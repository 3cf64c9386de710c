"""Japanese words for BM25: SudachiPy (core dictionary), split mode C, normalized forms."""

import itertools
import os
import threading
from collections.abc import Sequence
from importlib.metadata import version
from typing import Literal

from pydantic import BaseModel
from sudachipy import Dictionary, SplitMode, Tokenizer

from kotae.indexer.thread_pools import shared_pool

# Sudachi refuses inputs over 49,149 bytes; 12,000 characters stay under it even at 4 bytes each.
_MAX_CHARS_PER_CALL = 12_000
_MIN_TEXTS_PER_THREAD = 16
"""Below this many texts a thread's hand-off costs more than it saves."""
_MAX_THREADS = 8


class TokenizerSettings(BaseModel):
    """How an index's BM25 tokens were made; queries must be tokenized the same way."""

    split_mode: Literal["A", "B", "C"] = "C"
    """C keeps compounds whole (外国人参政権 is one word), which suits retrieval of named things."""
    form: Literal["normalized"] = "normalized"
    """Sudachi's normalized form folds spelling variants (ＡＢＣ→ABC, 附属→付属)."""
    lowercase: bool = True
    dropped_pos: tuple[str, ...] = ("補助記号", "空白", "助詞", "助動詞")
    """Part-of-speech classes left out: punctuation and whitespace carry no meaning, particles and
    auxiliary verbs next to none (dropping them raised hybrid recall@5 by 0.3-0.5 points on JSQuAD and
    JaQuAD, see benchmarks/retrieval.py) and they make up a third of the tokens."""
    dictionary: str = "core"
    sudachipy_version: str = version("sudachipy")
    dictionary_version: str = version("sudachidict-core")


class SudachiTokenizer:
    """Thread-safe: Sudachi tokenizer objects are not, so each thread gets its own."""

    def __init__(self, settings: TokenizerSettings | None = None) -> None:
        self.settings = settings or TokenizerSettings()
        self._mode = getattr(SplitMode, self.settings.split_mode)
        self._dictionary = Dictionary(dict=self.settings.dictionary)
        self._dictionary_lock = threading.Lock()
        self._local = threading.local()

    def tokenize(self, text: str) -> list[str]:
        tokenizer = self._thread_tokenizer()
        dropped = self.settings.dropped_pos
        words: list[str] = []
        for start in range(0, len(text), _MAX_CHARS_PER_CALL):
            for morpheme in tokenizer.tokenize(text[start : start + _MAX_CHARS_PER_CALL]):
                if morpheme.part_of_speech()[0] in dropped:
                    continue
                word = morpheme.normalized_form()
                words.append(word.lower() if self.settings.lowercase else word)
        return words

    def tokenize_many(self, texts: Sequence[str]) -> list[list[str]]:
        """`tokenize` of each text, in order; a batch is split into contiguous runs tokenized by threads
        side by side (each with its own Sudachi tokenizer)."""
        runs = min(len(texts) // _MIN_TEXTS_PER_THREAD, _MAX_THREADS, os.cpu_count() or 1)
        if runs < 2:
            return [self.tokenize(text) for text in texts]
        bounds = [len(texts) * i // runs for i in range(runs + 1)]
        slices = [texts[start:stop] for start, stop in itertools.pairwise(bounds)]
        tokenized = shared_pool("sudachi", _MAX_THREADS).map(
            lambda run: [self.tokenize(text) for text in run], slices
        )
        return [words for run in tokenized for words in run]

    def _thread_tokenizer(self) -> Tokenizer:
        tokenizer = getattr(self._local, "tokenizer", None)
        if tokenizer is None:
            with self._dictionary_lock:
                tokenizer = self._dictionary.tokenizer(mode=self._mode)
            self._local.tokenizer = tokenizer
        return tokenizer
