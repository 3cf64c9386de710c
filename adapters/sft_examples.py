"""SFT examples: the serving prompt around the gold passage and retrieved distractors, and the answer; or
an instruction record's prompt and output.

Each prompt comes from `kotae.rag.pipeline.make_prompt`, the function the server and evals call, with the
engine's token count, so an adapter is trained on exactly the bytes it will be served. As in the seed's
training set, the gold passage sits among passages the retriever ranked high for the question (the
confusable ones the model must learn to ignore), in a seeded random order so that the model does not
learn that the answer is always in the first line. Instruction records (Alpaca style) go through the same
prompt format, the instruction and its input in the places of the question and its contexts.
"""

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel
from rich.progress import track

from kotae.adapters.metadata import ContextsRef, DataRef
from kotae.adapters.rows import ExampleRow, read_rows
from kotae.core.durable import atomic_text, file_sha256
from kotae.core.errors import InputError, KotaeError
from kotae.core.instruction_jsonl import read_instruction_jsonl
from kotae.core.jsonl import read_jsonl
from kotae.core.passage import Passage
from kotae.core.qa_jsonl import QAItem, read_qa_jsonl
from kotae.indexer.chunking import CHUNK_ID_SEPARATOR, document_id
from kotae.rag.engine_protocol import ANSWER_STOPS
from kotae.rag.pipeline import make_prompt
from kotae.rag.prompt import DEFAULT_PROMPT_FORMAT, PROMPT_VERSION, Prompter, PromptFormat, fit_contexts

if TYPE_CHECKING:
    from kotae.indexer.index import Index
    from kotae.rag.retriever import Retriever

COMPLETION_END = ANSWER_STOPS[0]
"""A trained answer ends with a blank line ("\\n\\n", one Gemma token), the first stop the server passes to
vLLM: a served answer ends at the very token its training examples ended at, and `clean_answer` cuts
there too. TRL appends the tokenizer's EOS after it, so a client that sends no stop strings (e.g. vLLM's
own OpenAI server) still ends one token later, with the same text once trailing blanks are stripped.
Training on EOS alone would leave the blank-line stop unexercised and the base model's habit of writing
on after a blank line untouched."""

GOLD_MARGIN = 4
"""Extra passages retrieved per question, so that `contexts - 1` remain once the gold document (or its
chunks) is skipped."""

RETRIEVAL_BATCH = 256
"""Questions per `retrieve_many` call: one embedding batch each, with a progress update between."""


def completion_for(answer: str) -> str:
    return answer.strip() + COMPLETION_END


class ExamplesInfo(BaseModel):
    """Sidecar of an examples file (`<file>.json`): how its prompts were made."""

    prompt_version: str
    prompt_format: PromptFormat = DEFAULT_PROMPT_FORMAT
    contexts: ContextsRef
    examples: int
    negatives: float = 0.0
    """Share of the questions also asked without their gold article, to abstain (`kotae.adapters.negatives`);
    an adapter trained on the examples records it."""


@dataclass(frozen=True, slots=True)
class BuiltExamples:
    rows: list[ExampleRow]
    info: ExamplesInfo


def build_examples(
    data: Path,
    index_dir: Path,
    index: "Index",
    retriever: "Retriever",
    retrieval_mode: str,
    count_tokens: Callable[[str], int],
    prompter: Prompter,
    contexts: int,
    budget: int,
    seed: int,
) -> BuiltExamples:
    """One example per question of `data` whose answer fits in the prompt; see the module docstring."""
    if contexts < 1:
        raise KotaeError("contexts must be at least 1 (the gold passage)")
    questions = list(read_qa_jsonl(data))
    if not questions:
        raise InputError(data, None, "no questions")
    golds = [gold_passage(index, row, data, line) for line, row in questions]
    distractor_lists = _distractors(retriever, [row for _, row in questions], contexts - 1)
    rng = random.Random(seed)
    rows: list[ExampleRow] = []
    for (_, row), gold, distractors in zip(questions, golds, distractor_lists, strict=True):
        if gold is None:
            continue
        passages = _place_gold(gold, distractors, row.answers[0], count_tokens, budget, rng)
        if passages is None:
            continue
        rows.append(
            ExampleRow(
                prompt=make_prompt(row.question, passages, count_tokens, budget, prompter),
                completion=completion_for(row.answers[0]),
                question=row.question,
                answers=list(row.answers),
                qid=row.qid,
                passage_ids=[p.id for p in passages],
            )
        )
    info = ExamplesInfo(
        prompt_version=PROMPT_VERSION,
        prompt_format=prompter.format,
        contexts=ContextsRef(
            index=str(index_dir.resolve()),
            source=DataRef(path=str(data.resolve()), sha256=file_sha256(data), rows=len(questions)),
            contexts=contexts,
            context_token_budget=budget,
            retrieval=retrieval_mode,
            dropped=len(questions) - len(rows),
        ),
        examples=len(rows),
    )
    return BuiltExamples(rows, info)


def is_instruction_data(path: Path) -> bool:
    """Whether `path` holds instruction records rather than QA (its first record has `instruction`)."""
    first = next(read_jsonl(path), None)
    if first is None:
        raise InputError(path, None, "no records")
    return "instruction" in first[1]


def instruction_examples(path: Path, prompter: Prompter) -> tuple[list[ExampleRow], DataRef]:
    """One example per instruction record: its instruction and input in the prompt, its output the
    completion."""
    rows = [
        ExampleRow(
            prompt=prompter.render(item.instruction, item.input),
            completion=completion_for(item.output),
            question=item.instruction,
            answers=[item.output],
            qid=f"{path.name}:{line}",
        )
        for line, item in read_instruction_jsonl(path)
    ]
    return rows, DataRef(path=str(path.resolve()), sha256=file_sha256(path), rows=len(rows))


def gold_passage(index: "Index", row: QAItem, data: Path, line: int) -> Passage | None:
    """The gold passage as the index holds it. The indexer cuts a long document into chunks `id#1`,
    `id#2`, … (`id` itself then does not exist): the gold one is the first chunk holding the answer, and
    None when the answer straddles two chunks (the question is dropped)."""
    if not row.answerable:
        raise InputError(data, line, "an unanswerable question has no answer to train on (see --negatives)")
    if not row.gold_passage_ids:
        raise InputError(data, line, "`gold_passage_ids` must name the passage the question was written on")
    gold_id = row.gold_passage_ids[0]
    whole = index.passage(gold_id)
    if whole is not None:
        return whole
    numbered = (index.passage(f"{gold_id}{CHUNK_ID_SEPARATOR}{n}") for n in itertools.count(1))
    chunks = list(itertools.takewhile(bool, numbered))
    if not chunks:
        raise InputError(data, line, f"gold passage {gold_id!r} is not in the index")
    answer = _flat(row.answers[0])
    return next((chunk for chunk in chunks if answer in _flat(chunk.text)), None)


def _flat(text: str) -> str:
    """Whitespace as `context_line` leaves it: single spaces."""
    return " ".join(text.split())


def _distractors(retriever: "Retriever", rows: Sequence[QAItem], count: int) -> list[list[Passage]]:
    """The `count` best-ranked passages of each question that are not its gold ones."""
    if count == 0:
        return [[] for _ in rows]
    found: list[list[Passage]] = []
    batches = range(0, len(rows), RETRIEVAL_BATCH)
    for start in track(batches, description="retrieving distractors", transient=True):
        batch = rows[start : start + RETRIEVAL_BATCH]
        # Gold passages (or their chunks) may rank among the top: fetch enough to keep `count` others.
        top_k = count + GOLD_MARGIN
        hit_lists = retriever.retrieve_many([r.question for r in batch], top_k)
        for row, hits in zip(batch, hit_lists, strict=True):
            # Other chunks of a gold document may hold the answer too: they are no distractors.
            others = [h.passage for h in hits if document_id(h.passage.id) not in row.gold_passage_ids]
            found.append(others[:count])
    return found


def _place_gold(
    gold: Passage,
    distractors: list[Passage],
    answer: str,
    count_tokens: Callable[[str], int],
    budget: int,
    rng: random.Random,
) -> list[Passage] | None:
    """Distractors shuffled with the gold passage at a random rank — moved up when the budget would cut
    the answer out of it. None when even the first rank cannot hold the answer."""
    order = list(distractors)
    rng.shuffle(order)
    wanted = _flat(answer)
    for rank in range(rng.randint(0, len(order)), -1, -1):
        passages = [*order[:rank], gold, *order[rank:]]
        lines = fit_contexts(passages, count_tokens, budget)
        if rank < len(lines) and wanted in lines[rank]:
            return passages
    return None


def write_examples(path: Path, built: BuiltExamples) -> None:
    """The examples (JSONL, gzip when `path` ends in .gz) and their sidecar, each replaced atomically."""
    with atomic_text(path) as stream:
        for row in built.rows:
            stream.write(row.model_dump_json() + "\n")
    with atomic_text(info_path(path)) as stream:
        stream.write(built.info.model_dump_json(indent=2) + "\n")


def info_path(examples: Path) -> Path:
    return examples.with_name(examples.name + ".json")


def read_examples(path: Path) -> BuiltExamples:
    """Examples written by `write_examples`; refused when built for another prompt template."""
    sidecar = info_path(path)
    if not sidecar.is_file():
        raise InputError(sidecar, None, "missing: build examples with `kotae train examples`")
    info = ExamplesInfo.model_validate_json(sidecar.read_text(encoding="utf-8"))
    if info.prompt_version != PROMPT_VERSION:
        raise InputError(
            sidecar,
            None,
            f"built for prompt template {info.prompt_version!r}; kotae now uses {PROMPT_VERSION!r}: rebuild",
        )
    rows = [row for _, row in read_rows(path, ExampleRow)]
    if not rows:
        raise InputError(path, None, "no examples")
    return BuiltExamples(rows, info)
