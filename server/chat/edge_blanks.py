"""Streamed answer text without blanks at its two ends, as `/v1/qa`'s cleaning leaves it."""


class EdgeBlanks:
    """Drops the blanks a stream starts with and holds back trailing blanks until more text follows
    them, so the blanks at the very end are never sent."""

    def __init__(self) -> None:
        self._started = False
        self._held = ""

    def feed(self, text: str) -> str:
        """The part of `text` that can be sent now."""
        if not self._started:
            text = text.lstrip()
            if not text:
                return ""
            self._started = True
        text = self._held + text
        sendable = text.rstrip()
        self._held = text[len(sendable) :]
        return sendable
