"""The retrieval query of a chat: its last question made standalone from the earlier turns, without
asking a model.

Japanese follow-up questions leave out what they are about (`高さは？`) or point back at it
(`その標高は？`, `彼は何をした人ですか？`). Each question is read with SudachiPy (core dictionary,
split mode C):

1. A question is a *follow-up* when there are earlier turns and it
   - points back: it holds a demonstrative or personal pronoun (Sudachi's 代名詞 other than the
     interrogatives 何・いつ・どこ・誰・どれ・どちら・いくつ, or the adnominals その・この・あの・同じ …), or
     opens with a continuation (では・じゃあ・それでは・なら・ほかに …); or
   - names nothing: it holds no proper noun (固有名詞) of its own.
2. A follow-up's query is the content words (nouns other than numerals and pronouns, in order, without
   repeats) of the previous turn's standalone query, then the previous answer when it is short (an
   entity, at most `ANSWER_ENTITY_CHARS` characters) and not the no-answer text, then the question as
   the user wrote it. Standalone queries chain: the third turn builds on the second's query.
3. Any other question is its own query.

The method costs one Sudachi pass per turn and no LLM call; docs/RESULTS.md measures it against the
bare last question.
"""

import re
import threading
from functools import cache, lru_cache

from sudachipy import Dictionary, MorphemeList, SplitMode, Tokenizer

from kotae.rag.abstention import is_no_answer
from kotae.rag.conversation import Conversation

ANSWER_ENTITY_CHARS = 20
"""A previous answer longer than this is a sentence, not the entity a follow-up points at."""
INTERROGATIVES = frozenset(
    {"何", "なに", "なん", "いつ", "どこ", "誰", "だれ", "どれ", "どちら", "どっち", "いくつ", "幾つ"}
)
POINTING_ADNOMINALS = frozenset({"その", "この", "あの", "同じ", "そんな", "こんな", "あんな", "当の"})
ANALYZED_CHARS = 2_000
"""Only a message's first characters are read: what a question is about is said early, and Sudachi
refuses inputs over 49,149 bytes (an earlier message may be as long as the request body allows)."""
CONTINUATION = re.compile(r"^(では|じゃあ|じゃ|それでは|それなら|なら|ほかに|他に|あと|さらに|ちなみに)")


_local = threading.local()


@cache
def _dictionary() -> Dictionary:
    return Dictionary(dict="core")


def _morphemes(text: str) -> MorphemeList:
    # Sudachi tokenizers are not thread-safe: one per thread.
    tokenizer: Tokenizer | None = getattr(_local, "tokenizer", None)
    if tokenizer is None:
        tokenizer = _local.tokenizer = _dictionary().create(mode=SplitMode.C)
    return tokenizer.tokenize(text[:ANALYZED_CHARS])


def points_back(question: str) -> bool:
    """Whether the question refers to something said before (pronoun, demonstrative, continuation)."""
    if CONTINUATION.match(question.strip()):
        return True
    for morpheme in _morphemes(question):
        pos = morpheme.part_of_speech()[0]
        if pos == "代名詞" and morpheme.surface() not in INTERROGATIVES:
            return True
        if pos == "連体詞" and morpheme.surface() in POINTING_ADNOMINALS:
            return True
    return False


def names_something(question: str) -> bool:
    """Whether the question holds a proper noun of its own."""
    return any(m.part_of_speech()[1] == "固有名詞" for m in _morphemes(question))


def content_words(text: str) -> list[str]:
    """The nouns of `text` other than numerals, in order, each once."""
    words: list[str] = []
    for morpheme in _morphemes(text):
        pos = morpheme.part_of_speech()
        if pos[0] == "名詞" and pos[1] != "数詞" and morpheme.surface() not in words:
            words.append(morpheme.surface())
    return words


def is_follow_up(question: str) -> bool:
    return points_back(question) or not names_something(question)


@lru_cache(maxsize=1024)
def standalone_query(conversation: Conversation) -> str:
    """The query to retrieve the passages of the conversation's last question with. Kept for the latest
    conversations: a chat turn asks it for its retrieval and again for each prompt it fits (a Sudachi pass
    over every turn each time)."""
    previous_query = ""
    previous_answer = ""
    for turn in conversation.turns:
        previous_query = _rewrite(turn.question, previous_query, previous_answer)
        previous_answer = turn.answer
    return _rewrite(conversation.question, previous_query, previous_answer)


def _rewrite(question: str, previous_query: str, previous_answer: str) -> str:
    question = question.strip()
    if not previous_query or not is_follow_up(question):
        return question
    context = content_words(previous_query)
    answer = previous_answer.strip()
    if answer and len(answer) <= ANSWER_ENTITY_CHARS and not is_no_answer(answer) and answer not in context:
        context.append(answer)
    return " ".join([*context, question])
