"""The loop guard: a small base model often repeats a phrase until `max_tokens` ("東京都、東京都、…").

`cut_repetition` trims a finished text; `LoopGuard` watches a text as it is generated and stops it at the
first character where its tail loops. vLLM's engine core can also end a request whose tokens loop (its
repetition detection); `ENGINE_LOOP_COPIES` and `ENGINE_LOOP_MAX_PATTERN` set it so that it ends a loop only
after the guard has cut the text, which then stays the guard's.
"""

MIN_REPEATS = 3
"""Back-to-back copies of one unit that make a loop."""
MIN_SPAN = 8
"""Characters those copies must cover: 「ははは」 or 「1111」 is text, not a loop."""
MAX_PERIOD = 80
"""Longest unit looked for."""
ENGINE_LOOP_COPIES = max(MIN_REPEATS, MIN_SPAN)
"""Back-to-back copies of one token pattern after which the engine core ends a request. Each copy's text
holds a character at least, so the text then holds `MIN_REPEATS` copies or more over `MIN_SPAN` characters
or more: the guard has cut it before the last of them. (A pattern of tokens without text, such as special
tokens, is the exception, and so is a stop string of the request's own that begins inside the last copy.)"""
ENGINE_LOOP_MAX_PATTERN = 8
"""Longest token pattern the engine core looks for: at `ENGINE_LOOP_COPIES` copies, the longest that fits an
answer of 64 tokens. Eight tokens of text stay under `MAX_PERIOD` characters, as the guard needs."""


def cut_repetition(text: str) -> str:
    """Cut a looping tail down to its first occurrence.

    If the text ends with `MIN_REPEATS` or more back-to-back copies of one unit (possibly followed by
    an unfinished copy) spanning at least `MIN_SPAN` characters, everything after the first copy goes.
    """
    n = len(text)
    for period in range(1, min(n // MIN_REPEATS, MAX_PERIOD) + 1):
        # The tail may stop inside a copy: try each partial remainder.
        for partial in range(period):
            end = n - partial
            if text[end:] != text[end - period : end - period + partial]:
                continue
            unit = text[end - period : end]
            copies = 1
            while (
                end - (copies + 1) * period >= 0
                and text[end - (copies + 1) * period : end - copies * period] == unit
            ):
                copies += 1
            if copies >= MIN_REPEATS and copies * period >= MIN_SPAN:
                start = end - copies * period
                # The loop may have begun a few characters earlier, in a rotated unit.
                while start > 0 and text[start - 1] == text[start - 1 + period]:
                    start -= 1
                return text[: start + period]
    return text


class LoopGuard:
    """Follows a generated text and says where it starts looping: at the first character after which
    `cut_repetition` would cut. Every character is checked, not just the ends of the chunks an engine
    happens to deliver, so what the guard lets out depends on the text alone, never on timing: a streamed
    answer and the same answer generated in one piece come out the same.

    For each unit length p it keeps how many trailing characters equal the character p before: the tail
    then holds `(run + p) // p` copies of a p-character unit, and each new character costs `MAX_PERIOD`
    comparisons.
    """

    def __init__(self) -> None:
        self.text = ""
        """What may go out: the whole text so far, or, once it loops, everything before the character
        that made it a loop."""
        self.looping = False
        self._runs = [0] * (MAX_PERIOD + 1)

    def feed(self, generated: str) -> str:
        """Take the whole text generated so far (each call extends the last); return what of it may go
        out now that did not before."""
        if self.looping:
            return ""
        start = len(self.text)
        runs = self._runs
        for i in range(start, len(generated)):
            char = generated[i]
            for period in range(1, min(i, MAX_PERIOD) + 1):
                if generated[i - period] != char:
                    runs[period] = 0
                    continue
                runs[period] += 1
                copies = (runs[period] + period) // period
                if copies >= MIN_REPEATS and copies * period >= MIN_SPAN:
                    self.looping = True
                    self.text = generated[:i]
                    return generated[start:i]
        self.text = generated
        return generated[start:]
