"""The prompt formats an adapter can be trained and served in.

- `alpaca-ja`: 指示/入力/応答, exactly as the seeds and llm-jp-eval write it (the default);
- `chat-template`: the base model's own chat template, the instruction and input as one user turn;
- `rwkv`: RWKV-style prefixes, `+qa` for a record with an input, `+gen` for one without;
- `record-line`: instruction, input and output on one line, as line-per-record training text.

Training (kotae.adapters) and serving both build prompts here, so an adapter sees at serve time the
bytes it was trained on. Every format's answer ends at a blank line (`ANSWER_STOPS`).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from kotae.core.errors import KotaeError
from kotae.core.passage import Passage
from kotae.rag.engine_protocol import ANSWER_STOPS
from kotae.rag.loop_guard import cut_repetition

PROMPT_VERSION = "alpaca-ja-v1"
"""Recorded in adapter metadata; bump when the template changes."""

PREAMBLE = (
    "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。"
)
TEMPLATE = PREAMBLE + "\n\n### 指示:\n{instruction}\n\n### 入力:\n{input}\n\n### 応答:\n"

PromptFormat = Literal["alpaca-ja", "chat-template", "rwkv", "record-line"]
PROMPT_FORMATS: tuple[PromptFormat, ...] = get_args(PromptFormat)
DEFAULT_PROMPT_FORMAT: PromptFormat = "alpaca-ja"
"""What an adapter whose metadata names no format was trained on."""


@dataclass(frozen=True, slots=True)
class Prompter:
    """Writes prompts in one format; `tokenizer` is the generator's, which `chat-template` reads."""

    format: PromptFormat = DEFAULT_PROMPT_FORMAT
    tokenizer: Any = None

    def render(self, instruction: str, input_text: str = "") -> str:
        """The prompt of an instruction and its (possibly empty) input; the output follows it."""
        instruction = instruction.strip()
        match self.format:
            case "alpaca-ja":
                return TEMPLATE.format(instruction=instruction, input=input_text)
            case "chat-template":
                return self._chat_turn(f"{instruction}\n\n{input_text}" if input_text else instruction)
            case "rwkv":
                return f"+qa {instruction}\n{input_text}\n答え:" if input_text else f"+gen {instruction}\n"
            case "record-line":
                # One line per record: newlines inside the fields would start the next record.
                return f"指示:{_one_line(instruction)} 入力:{_one_line(input_text)} 応答:"

    def qa(self, question: str, contexts: Sequence[str]) -> str:
        """The prompt of a question over its context lines (the instruction and the input)."""
        separator = " " if self.format == "record-line" else "\n"
        return self.render(question, separator.join(contexts))

    def _chat_turn(self, content: str) -> str:
        if self.tokenizer is None or not getattr(self.tokenizer, "chat_template", None):
            raise KotaeError("prompt format chat-template needs a tokenizer with a chat template")
        text: str = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
        # Training and vLLM both tokenize the prompt with special tokens: a BOS in the text would be doubled.
        bos = self.tokenizer.bos_token
        return text.removeprefix(bos) if bos else text


DEFAULT_PROMPTER = Prompter()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def context_line(passage: Passage) -> str:
    """One `title text` line; newlines inside a passage would break the one-line-per-passage layout."""
    text = " ".join(passage.text.split())
    return f"{passage.title} {text}" if passage.title else text


def fit_contexts(passages: Sequence[Passage], count_tokens: Callable[[str], int], budget: int) -> list[str]:
    """Context lines in rank order, within `budget` tokens: the first line that does not fit is cut
    at a character boundary, and later ones are dropped (the best-ranked passages matter most)."""
    lines: list[str] = []
    used = 0
    for passage in passages:
        line = context_line(passage)
        cost = count_tokens(line) + 1  # + the newline that joins it
        if used + cost <= budget:
            lines.append(line)
            used += cost
            continue
        remaining = budget - used - 1
        if remaining > 8:
            lines.append(_truncate_to_tokens(line, count_tokens, remaining))
        break
    return lines


def _truncate_to_tokens(text: str, count_tokens: Callable[[str], int], budget: int) -> str:
    """Longest prefix of `text` within `budget` tokens (binary search on characters)."""
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if count_tokens(text[:mid]) <= budget:
            low = mid
        else:
            high = mid - 1
    return text[:low]


@dataclass(frozen=True, slots=True)
class FittedPrompt:
    text: str
    passages: int
    """How many of the passages, in rank order, the prompt holds."""
    last_cut: bool
    """Whether the last of them is only its beginning (the budget ran out inside it)."""


def fit_prompt(
    question: str,
    passages: Sequence[Passage],
    count_tokens: Callable[[str], int],
    budget: int,
    prompter: Prompter = DEFAULT_PROMPTER,
) -> FittedPrompt:
    """The prompt of a question and its ranked passages, the passages within `budget` tokens."""
    contexts = fit_contexts(passages, count_tokens, budget)
    last_cut = bool(contexts) and contexts[-1] != context_line(passages[len(contexts) - 1])
    return FittedPrompt(prompter.qa(question, contexts), len(contexts), last_cut)


def clean_answer(text: str) -> str:
    """The answer as a user reads it: up to the first blank line or `###`, without loops."""
    for stop in ANSWER_STOPS:
        text = text.split(stop, 1)[0]
    return cut_repetition(text).strip()
