"""A chat as the prompt formats and retrieval read it: system text, earlier turns, the question."""

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Turn:
    """An earlier exchange: what the user asked and what the assistant answered ("" when it did not)."""

    question: str
    answer: str = ""


@dataclass(frozen=True, slots=True)
class Conversation:
    question: str
    """The last user message: what to answer now."""
    turns: tuple[Turn, ...] = field(default=())
    """Earlier exchanges, oldest first."""
    system: str = ""
    """System (and developer) messages, joined by newlines."""

    @property
    def single_turn(self) -> bool:
        """Nothing but the question: its prompt is exactly the single-question prompt."""
        return not self.turns and not self.system
