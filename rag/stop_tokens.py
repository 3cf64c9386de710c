"""Stop tokens: the vocabulary's tokens whose text holds a stop string, handed to vLLM beside the strings.

vLLM checks stop strings in its front end, after detokenizing. A request that one stops is aborted in the
engine core a step or two later, and the core meanwhile keeps scheduling and computing it. A stop token ends
the request in the core's own step. The stop strings stay set: they catch a stop string split across tokens,
and they keep a stream from showing characters that could begin one.

A request that a stop token ends gets that token's text left out of its answer, where the stop strings
alone would have cut at the first stop string. `StopTokens.text` puts the token's text back and cuts as
vLLM does, so the answer is the same either way.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kotae.rag.engine_protocol import ANSWER_STOPS


@dataclass(frozen=True, slots=True)
class StopTokens:
    stops: tuple[str, ...]
    """The stop strings whose tokens these are."""
    texts: dict[int, str]
    """Each stop token's id and its text."""

    @classmethod
    def of(cls, tokenizer: Any, stops: Sequence[str] = ANSWER_STOPS) -> "StopTokens":
        """Every token of `tokenizer` whose text, decoded alone as vLLM decodes answers (by the Rust
        tokenizer, for a fast one), holds one of `stops` (the answer stops unless told). The whole
        vocabulary goes to the tokenizer in one batched call."""
        tokens = [[token] for token in range(len(tokenizer))]
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None:
            texts = backend.decode_batch(tokens, skip_special_tokens=True)
        else:
            texts = tokenizer.batch_decode(tokens, skip_special_tokens=True)
        stops = tuple(stops)
        return cls(stops, {token: text for token, text in enumerate(texts) if any(s in text for s in stops)})

    def serve(self, stops: Sequence[str]) -> bool:
        """Whether these tokens may stop a request whose stop strings are `stops`: when each of this set's
        strings is among them."""
        return all(stop in stops for stop in self.stops)

    def text(self, text: str, stop_reason: object, stops: Sequence[str]) -> str:
        """The text vLLM gives for an answer that its stop strings `stops` alone had stopped, from the text
        it gives when it stopped at a stop token (`stop_reason`, vLLM's: that token's id): the token's text
        put back, then cut before the stop string that ends first, as vLLM's own check cuts. Any other text
        is returned as it is."""
        token_text = self.texts.get(stop_reason) if isinstance(stop_reason, int) else None
        if token_text is None:
            return text
        text += token_text
        # (end, order in `stops`, start) of each stop string's first occurrence: vLLM's pick and tie-break.
        found = [
            (at + len(stop), order, at)
            for order, stop in enumerate(stops)
            if stop and (at := text.find(stop)) >= 0
        ]
        return text[: min(found)[2]] if found else text
