"""Tokens of a text as the generator's tokenizer counts them: the context budget's unit."""

from collections.abc import Callable, Sequence
from typing import Any


class TokenCounter:
    """Counts without special tokens, as the engines and training all do, so the context budget trims the
    same characters when an adapter is trained and when it is served."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def many(self, texts: Sequence[str]) -> list[int]:
        """The counts of `encode_many`."""
        return [len(ids) for ids in self.encode_many(texts)]

    def encode_many(self, texts: Sequence[str], add_special_tokens: bool = False) -> list[list[int]]:
        """Each text's token ids, in one batched call: the Rust tokenizer encodes the batch in parallel,
        outside the GIL, where one call per text holds the server's event loop thread."""
        if not texts:
            return []
        return self.tokenizer(list(texts), add_special_tokens=add_special_tokens)["input_ids"]

    def knowing(self, texts: Sequence[str]) -> Callable[[str], int]:
        """A counter that answers `texts` from one `many` call and anything else one by one."""
        known = dict(zip(texts, self.many(texts), strict=True))

        def count(text: str) -> int:
            cached = known.get(text)
            return self(text) if cached is None else cached

        return count
