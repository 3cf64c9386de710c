"""Tokens of a text as the generator's tokenizer counts them: the context budget's unit."""

from collections.abc import Callable, Sequence
from typing import Any


class TokenCounter:
    """Counts without special tokens, as the engines and training all do, so the context budget trims the
    same characters when an adapter is trained and when it is served.

    A fast tokenizer encodes through its Rust backend: what the tokenizer's own call returns (it clears
    truncation and padding on every call; a backend configured otherwise keeps the tokenizer's call), but
    without that call's per-call set-up, and safe from any number of threads at once."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        plain = (
            backend is not None
            and backend.truncation is None
            and backend.padding is None
            and backend.encode_special_tokens == getattr(tokenizer, "split_special_tokens", False)
        )
        self._backend = backend if plain else None

    def __call__(self, text: str) -> int:
        return len(self.encode_many([text])[0])

    def many(self, texts: Sequence[str]) -> list[int]:
        """The counts of `encode_many`."""
        return [len(ids) for ids in self.encode_many(texts)]

    def encode_many(self, texts: Sequence[str], add_special_tokens: bool = False) -> list[list[int]]:
        """Each text's token ids, in one batched call: the Rust tokenizer encodes the batch in parallel,
        outside the GIL, where one call per text holds the server's event loop thread."""
        if not texts:
            return []
        if self._backend is not None:
            return [
                row.ids
                for row in self._backend.encode_batch(list(texts), add_special_tokens=add_special_tokens)
            ]
        return self.tokenizer(list(texts), add_special_tokens=add_special_tokens)["input_ids"]

    def knowing(self, texts: Sequence[str]) -> Callable[[str], int]:
        """A counter that answers `texts` from one `many` call, each distinct text encoded once (a batch's
        questions often share passages), and anything else one by one."""
        distinct = list(dict.fromkeys(texts))
        known = dict(zip(distinct, self.many(distinct), strict=True))

        def count(text: str) -> int:
            cached = known.get(text)
            return self(text) if cached is None else cached

        return count
