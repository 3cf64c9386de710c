"""Length-sorted batches under a token budget, tokenized ahead of the model in a background thread.

An encoder spends its time on padded positions too: batching texts of similar length, and sizing each batch
by the tokens it holds rather than by a count of texts, keeps that waste small on a CPU and keeps a GPU's
batches equally large whatever the texts' lengths.
"""

import json
import queue
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_FIRST_BLOCK = 1024
Tokenize = Callable[[list[Any]], Sequence[Sequence[int]]]
"""Token ids of each text, special tokens included, truncated to the model's limit."""


class FastTokenizer:
    """A `tokenizers` pipeline that truncates to `max_length` and never pads, with a shortcut: literal
    `Replace` rules at the start of its normalizer are skipped for texts that hold none of their patterns'
    first characters (the rules change nothing there). multilingual-e5's normalizer starts with about a
    hundred such rules for half-width katakana, which most texts do not contain.

    `tokenizer` is used as it is (its truncation and padding are set before each use); the shortcut shares
    its vocabulary rather than copying it."""

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        from tokenizers import Tokenizer, normalizers

        self.backend = tokenizer
        self.max_length = max_length
        self._short: Tokenizer | None = None
        self._needs_full: re.Pattern | None = None
        spec = json.loads(tokenizer.to_str()).get("normalizer") or {}
        rules = spec.get("normalizers", []) if spec.get("type") == "Sequence" else []
        literal = 0
        while literal < len(rules) and _literal_replace(rules[literal]):
            literal += 1
        if literal:
            firsts = {rule["pattern"]["String"][0] for rule in rules[:literal]}
            self._needs_full = re.compile("[" + "".join(re.escape(c) for c in sorted(firsts)) + "]")
            short = Tokenizer(tokenizer.model)
            short.normalizer = normalizers.Sequence(
                [tokenizer.normalizer[i] for i in range(literal, len(rules))]
            )
            short.pre_tokenizer = tokenizer.pre_tokenizer
            short.post_processor = tokenizer.post_processor
            short.decoder = tokenizer.decoder
            added = sorted(tokenizer.get_added_tokens_decoder().items())
            short.add_special_tokens([token for _, token in added if token.special])
            short.add_tokens([token for _, token in added if not token.special])
            self._short = short

    def __call__(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, special tokens included."""
        for tokenizer in (self.backend, self._short):
            if tokenizer is not None:
                tokenizer.no_padding()
                tokenizer.enable_truncation(max_length=self.max_length)
        if self._short is None or self._needs_full is None:
            return [encoding.ids for encoding in self.backend.encode_batch_fast(texts)]
        full = [i for i, text in enumerate(texts) if self._needs_full.search(text)]
        ids = [encoding.ids for encoding in self._short.encode_batch_fast(texts)]
        for i, encoding in zip(full, self.backend.encode_batch_fast([texts[i] for i in full]), strict=True):
            ids[i] = encoding.ids
        return ids


def _literal_replace(rule: dict) -> bool:
    pattern = rule.get("pattern") or {}
    return rule.get("type") == "Replace" and bool(pattern.get("String"))


@dataclass(frozen=True)
class TokenIds:
    """The token ids of many texts in one flat array: cheap to pass from a worker process, and small."""

    flat: np.ndarray
    """Every text's ids, one after the other (int32)."""
    offsets: np.ndarray
    """Where each text's ids start in `flat`, and where the last one ends (int64, one more than texts)."""

    @classmethod
    def of(cls, ids: Sequence[Sequence[int]]) -> "TokenIds":
        lengths = np.fromiter((len(row) for row in ids), np.int64, len(ids))
        offsets = np.zeros(len(ids) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter((token for row in ids for token in row), np.int32, int(offsets[-1]))
        return cls(flat, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, text: int) -> np.ndarray:
        return self.flat[self.offsets[text] : self.offsets[text + 1]]


@dataclass(frozen=True)
class Batch:
    rows: np.ndarray
    """Positions of the batch's texts in the caller's input (int64)."""
    input_ids: np.ndarray
    """[rows, length] int64, right-padded with the pad id; length is a multiple of `multiple`."""
    attention_mask: np.ndarray
    """[rows, length] int64: 1 on tokens, 0 on padding."""


@dataclass(frozen=True)
class Block:
    """The batches of consecutive input texts [start, start + count), in the order they are run."""

    start: int
    count: int
    batches: list[Any]
    """What `prepare` made of each `Batch` (the `Batch` itself by default)."""
    rows: np.ndarray
    """The batches' `rows` concatenated, relative to the whole input: where each output row goes."""


def round_up(length: int, multiple: int) -> int:
    return -(-length // multiple) * multiple


def plan_batches(
    lengths: np.ndarray, token_budget: int, max_rows: int, multiple: int = 1
) -> list[np.ndarray]:
    """Positions grouped into batches, shortest texts first, so that rows × padded length stays within
    `token_budget` (a text longer than the budget is a batch of its own) and rows within `max_rows`.

    The padded length is the batch's longest text rounded up to `multiple`: a few lengths give few distinct
    shapes, which compiled runtimes (OpenVINO, CUDA kernels) tune once and reuse."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    padded = [round_up(int(length), multiple) for length in np.asarray(lengths)[order]]
    batches, start = [], 0
    while start < len(order):
        end = start + 1
        while end < len(order) and end - start < max_rows and (end + 1 - start) * padded[end] <= token_budget:
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


def pad_batch(rows: np.ndarray, ids: Sequence[Sequence[int]], pad_id: int, multiple: int) -> Batch:
    """The batch of texts `rows` (positions in `ids`, which holds a block's token ids)."""
    length = round_up(max(len(ids[row]) for row in rows), multiple)
    input_ids = np.full((len(rows), length), pad_id, np.int64)
    attention_mask = np.zeros((len(rows), length), np.int64)
    for i, row in enumerate(rows):
        tokens = ids[row]
        input_ids[i, : len(tokens)] = tokens
        attention_mask[i, : len(tokens)] = 1
    return Batch(rows, input_ids, attention_mask)


def blocks(
    texts: Sequence[Any],
    tokenize: Tokenize,
    pad_id: int,
    *,
    token_budget: int,
    max_rows: int,
    multiple: int,
    block_texts: int,
    prepare: Callable[[Batch], Any] = lambda batch: batch,
) -> Iterator[Block]:
    """`texts` in blocks of up to `block_texts`, each tokenized, sorted and batched in a background thread
    while the caller runs the model on the block before. Blocks start small and double, so that the model
    starts soon. `prepare` runs in that thread too (e.g. copying a batch into page-locked memory for a
    GPU). Errors of the thread are raised here."""
    handoff: queue.Queue = queue.Queue(maxsize=1)  # one block ready while the caller runs another
    stop = threading.Event()

    def put(item: object) -> None:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            start, size = 0, min(block_texts, _FIRST_BLOCK)
            while start < len(texts):
                if stop.is_set():
                    return
                chunk = list(texts[start : start + size])
                ids = tokenize(chunk)
                lengths = np.fromiter((len(tokens) for tokens in ids), np.int64, len(ids))
                planned = plan_batches(lengths, token_budget, max_rows, multiple)
                made = [prepare(pad_batch(rows, ids, pad_id, multiple)) for rows in planned]
                order = np.concatenate(planned) + start
                put(Block(start, len(chunk), made, order))
                start, size = start + len(chunk), min(2 * size, block_texts)
            put(None)
        except BaseException as error:  # handed to the caller, who raises it
            put(error)

    thread = threading.Thread(target=produce, name="kotae-tokenize", daemon=True)
    thread.start()
    try:
        while (item := handoff.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
