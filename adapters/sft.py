"""`kotae train sft`: LoRA SFT on QA and instruction records in the adapter's prompt format, loss on the
answer only."""

from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console

from kotae.adapters.atomic import check_target
from kotae.adapters.config import SFTRunConfig
from kotae.adapters.metadata import AdapterMetadata, ContextsRef, DataRef
from kotae.adapters.negatives import negative_examples, with_negatives
from kotae.adapters.probe_callback import Probe
from kotae.adapters.rows import ExampleRow
from kotae.adapters.sft_examples import (
    BuiltExamples,
    build_examples,
    instruction_examples,
    is_instruction_data,
    read_examples,
)
from kotae.adapters.training import RunData, held_out_split, train_adapter
from kotae.core.config import get_settings
from kotae.core.durable import file_sha256
from kotae.core.errors import KotaeError
from kotae.core.qa_jsonl import read_qa_jsonl
from kotae.rag.abstention import NO_ANSWER
from kotae.rag.prompt import Prompter, PromptFormat


@dataclass(frozen=True, slots=True)
class SourceExamples:
    """The examples of one data file."""

    rows: list[ExampleRow]
    data: DataRef
    contexts: ContextsRef | None
    """How a QA file's prompts got their passages; None for instruction records."""


def train_sft(config: SFTRunConfig, console: Console, overwrite: bool = False) -> AdapterMetadata:
    check_target(config.out, overwrite)
    if config.examples:
        if config.negatives:
            raise KotaeError(
                "--negatives builds negative examples from --data; examples files hold their own "
                "(set by `kotae train examples --negatives`)"
            )
        sources, share = _prebuilt_sources(config.examples, config.prompt_format)
        config = replace(config, negatives=share)  # recorded in the adapter's metadata
    elif config.data is not None:
        prompter = load_prompter(config.base, config.prompt_format)
        sources = [_source_examples(path, config, prompter, console) for path in (config.data, *config.mix)]
    else:
        raise KotaeError("SFT needs --data (and --index for QA sets), or --examples")
    rows = [row for source in sources for row in source.rows]
    train, held = held_out_split(rows, config.eval_fraction, config.seed)
    probe_rows = (held or train)[: config.probe_count]
    run = RunData(
        kind="sft",
        train=[{"prompt": r.prompt, "completion": r.completion} for r in train],
        eval=[{"prompt": r.prompt, "completion": r.completion} for r in held],
        data=sources[0].data,
        mixed=[source.data for source in sources[1:]],
        probes=[Probe(r.question, r.prompt, r.answers) for r in probe_rows],
        contexts=next((source.contexts for source in sources if source.contexts), None),
        prompt_format=config.prompt_format,
    )
    return train_adapter(config, run, console, overwrite)


def _prebuilt_sources(
    paths: tuple[Path, ...], prompt_format: PromptFormat
) -> tuple[list[SourceExamples], float]:
    """Each examples file as a source, and their share of negatives: each file's share weighted by its
    answerable examples."""
    sources: list[SourceExamples] = []
    answerable = negatives = 0.0
    for path in paths:
        built = read_examples(path)
        if built.info.prompt_format != prompt_format:
            raise KotaeError(
                f"{path} was built in prompt format {built.info.prompt_format!r}: "
                f"train it with --prompt-format {built.info.prompt_format}"
            )
        ref = DataRef(path=str(path.resolve()), sha256=file_sha256(path), rows=len(built.rows))
        sources.append(SourceExamples(built.rows, ref, built.info.contexts))
        positives = sum(row.answers != [NO_ANSWER] for row in built.rows)
        answerable += positives
        negatives += positives * built.info.negatives
    return sources, negatives / answerable if answerable else 0.0


def load_prompter(base: Path, prompt_format: PromptFormat) -> Prompter:
    """The prompt writer of `base`'s tokenizer (whose chat template `chat-template` uses)."""
    from transformers import AutoTokenizer

    return Prompter(prompt_format, AutoTokenizer.from_pretrained(base))


def _source_examples(
    path: Path, config: SFTRunConfig, prompter: Prompter, console: Console
) -> SourceExamples:
    if is_instruction_data(path):
        rows, ref = instruction_examples(path, prompter)
        console.print(f"{len(rows)} instruction examples from {path}")
        return SourceExamples(rows, ref, None)
    if config.index is None:
        raise KotaeError(f"{path} is a QA set: its prompts need --index (the passages to answer from)")
    built = build_sft_examples(
        prompter,
        path,
        config.index,
        config.contexts,
        config.context_token_budget,
        config.seed,
        console,
        config.negatives,
    )
    return SourceExamples(built.rows, built.info.contexts.source, built.info.contexts)


def build_sft_examples(
    prompter: Prompter,
    data: Path,
    index: Path,
    contexts: int,
    budget: int,
    seed: int,
    console: Console,
    negatives: float = 0.0,
) -> BuiltExamples:
    """Examples for `data` with passages from `index`, retrieved as `kotae serve` retrieves them; and
    negatives for a `negatives` share of its questions (`kotae.adapters.negatives`)."""
    from kotae.indexer.embedder import Embedder
    from kotae.indexer.index import Index
    from kotae.models.store import ModelStore
    from kotae.rag.retriever import Retriever
    from kotae.rag.token_counter import TokenCounter

    settings = get_settings()
    with console.status("opening the index and the embedder…"):
        opened = Index.open(index)
        retriever = Retriever(
            opened, Embedder(ModelStore(settings.home).embedder(settings.embedder)), settings
        )
        count_tokens = TokenCounter(prompter.tokenizer)
    try:
        built = build_examples(
            data, index, opened, retriever, settings.retrieval, count_tokens, prompter, contexts, budget, seed
        )
        if negatives > 0:
            items = [item for _, item in read_qa_jsonl(data)]
            found = negative_examples(
                items, retriever, count_tokens, prompter, contexts, budget, negatives, seed
            )
            built = with_negatives(built, found, negatives)
            console.print(f"{len(found)} negative examples (the gold article left out, answer: {NO_ANSWER})")
    finally:
        opened.close()
    console.print(
        f"{built.info.examples} examples from {built.info.contexts.source.rows} questions "
        f"({built.info.contexts.dropped} dropped: the answer did not fit in the context budget or one chunk)"
    )
    return built
