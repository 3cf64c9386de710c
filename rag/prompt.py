"""The prompt formats an adapter can be trained and served in.

- `alpaca-ja`: 指示/入力/応答, exactly as the seeds and llm-jp-eval write it (the default);
- `chat-template`: the base model's own chat template, the instruction and input as one user turn;
- `rwkv`: RWKV-style prefixes, `+qa` for a record with an input, `+gen` for one without;
- `record-line`: instruction, input and output on one line, as line-per-record training text.

Training (kotae.adapters) and serving both build prompts here, so an adapter sees at serve time the
bytes it was trained on. Every format's answer ends at a blank line (`ANSWER_STOPS`).

A chat's system messages and earlier turns (`Prompter.conversation`) enter each format as follows; a
conversation of one question and nothing else gets exactly the single-question prompt:

- `chat-template`: the template's own messages: a `system` message (folded into the first user turn
  when the template has no system role), one user/assistant pair per earlier turn, and the last user
  turn holding the question and the passages as in a single question;
- `alpaca-ja`, `rwkv`, `record-line`: the instruction holds the system text, then the question made
  standalone (`kotae.rag.standalone_query`, the query the passages were retrieved for); the earlier turns
  follow the passage lines in the input, one `質問: …` and one `答え: …` line per turn. Adapters trained on
  single questions extract their answer from the input: with the bare follow-up as the question and the
  turns before the passages, they copied the previous answer (docs/RESULTS.md, "Chat answers").
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from jinja2 import TemplateError

from kotae.core.errors import KotaeError
from kotae.core.passage import Passage
from kotae.rag.conversation import Conversation
from kotae.rag.engine_protocol import ANSWER_STOPS
from kotae.rag.loop_guard import cut_repetition
from kotae.rag.standalone_query import standalone_query

PROMPT_VERSION = "alpaca-ja-v1"
"""Recorded in adapter metadata; bump when the template changes."""

PREAMBLE = (
    "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。"
)
TEMPLATE = PREAMBLE + "\n\n### 指示:\n{instruction}\n\n### 入力:\n{input}\n\n### 応答:\n"

HISTORY_QUESTION = "質問: "
HISTORY_ANSWER = "答え: "
"""How an earlier turn's question and answer start their lines in the input of the instruction formats."""

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
                return self._chat([{"role": "user", "content": _user_turn(instruction, input_text)}])
            case "rwkv":
                return f"+qa {instruction}\n{input_text}\n答え:" if input_text else f"+gen {instruction}\n"
            case "record-line":
                # One line per record: newlines inside the fields would start the next record.
                return f"指示:{_one_line(instruction)} 入力:{_one_line(input_text)} 応答:"

    def qa(self, question: str, contexts: Sequence[str]) -> str:
        """The prompt of a question over its context lines (the instruction and the input)."""
        return self.render(question, self._lines(contexts))

    def conversation(self, conversation: Conversation, contexts: Sequence[str]) -> str:
        """The prompt of a chat's last question over its context lines, with the system text and the
        earlier turns as the module docstring says; `qa` itself for a lone question."""
        if conversation.single_turn:
            return self.qa(conversation.question, contexts)
        if self.format == "chat-template":
            return self._chat_history(conversation, contexts)
        history = []
        for turn in conversation.turns:
            history.append(HISTORY_QUESTION + turn.question.strip())
            if turn.answer.strip():
                history.append(HISTORY_ANSWER + turn.answer.strip())
        # alpaca-ja's instruction is a block of lines; the line formats keep it on one line.
        joiner = "\n" if self.format == "alpaca-ja" else " "
        question = standalone_query(conversation)
        instruction = joiner.join(part for part in (conversation.system.strip(), question) if part)
        return self.render(instruction, self._lines([*contexts, *history]))

    def _lines(self, lines: Sequence[str]) -> str:
        separator = " " if self.format == "record-line" else "\n"
        return separator.join(lines)

    def _chat_history(self, conversation: Conversation, contexts: Sequence[str]) -> str:
        messages = []
        for turn in conversation.turns:
            messages.append({"role": "user", "content": turn.question.strip()})
            if turn.answer.strip():
                messages.append({"role": "assistant", "content": turn.answer.strip()})
        last = _user_turn(conversation.question.strip(), "\n".join(contexts))
        messages.append({"role": "user", "content": last})
        system = conversation.system.strip()
        if not system:
            return self._chat(messages)
        try:
            return self._chat([{"role": "system", "content": system}, *messages])
        except TemplateError:
            # Templates without a system role refuse one: it then opens the first user turn.
            first = messages[0]
            return self._chat([{**first, "content": f"{system}\n\n{first['content']}"}, *messages[1:]])

    def _chat(self, messages: list[dict[str, str]]) -> str:
        if self.tokenizer is None or not getattr(self.tokenizer, "chat_template", None):
            raise KotaeError("prompt format chat-template needs a tokenizer with a chat template")
        text: str = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # Training and vLLM both tokenize the prompt with special tokens: a BOS in the text would be doubled.
        bos = self.tokenizer.bos_token
        return text.removeprefix(bos) if bos else text


DEFAULT_PROMPTER = Prompter()


def _user_turn(instruction: str, input_text: str) -> str:
    """`chat-template`'s user turn of an instruction and its input: a blank line between them."""
    return f"{instruction}\n\n{input_text}" if input_text else instruction


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
    return fit_conversation(Conversation(question), passages, count_tokens, budget, prompter)


class HistoryTooLong(KotaeError):
    """A chat's system text and earlier turns need more tokens than the passages' budget."""


def fit_conversation(
    conversation: Conversation,
    passages: Sequence[Passage],
    count_tokens: Callable[[str], int],
    budget: int,
    prompter: Prompter = DEFAULT_PROMPTER,
) -> FittedPrompt:
    """`fit_prompt` for a chat: the system text and earlier turns take their tokens out of the passages'
    `budget` (the question's are not counted in it, as in a single question)."""
    if not conversation.single_turn:
        lone = prompter.qa(conversation.question, [])
        history_tokens = count_tokens(prompter.conversation(conversation, [])) - count_tokens(lone)
        if history_tokens > budget:
            raise HistoryTooLong(
                f"the system messages and earlier turns take {history_tokens} tokens, more than the "
                f"{budget} the context allows them: send fewer or shorter earlier messages"
            )
        budget -= history_tokens
    contexts = fit_contexts(passages, count_tokens, budget)
    last_cut = bool(contexts) and contexts[-1] != context_line(passages[len(contexts) - 1])
    return FittedPrompt(prompter.conversation(conversation, contexts), len(contexts), last_cut)


def clean_answer(text: str) -> str:
    """The answer as a user reads it: up to the first blank line or `###`, without loops."""
    for stop in ANSWER_STOPS:
        text = text.split(stop, 1)[0]
    return cut_repetition(text).strip()
