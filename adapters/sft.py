"""`kotae train sft`: LoRA SFT on QA in the served prompt format, loss on the answer only."""

from pathlib import Path

from rich.console import Console

from kotae.adapters.atomic import check_target
from kotae.adapters.config import SFTRunConfig
from kotae.adapters.metadata import AdapterMetadata, DataRef
from kotae.adapters.negatives import negative_examples, with_negatives
from kotae.adapters.probe_callback import Probe
from kotae.adapters.sft_examples import BuiltExamples, build_examples, read_examples
from kotae.adapters.training import RunData, held_out_split, train_adapter
from kotae.core.config import get_settings
from kotae.core.durable import file_sha256
from kotae.core.errors import KotaeError
from kotae.core.qa_jsonl import read_qa_jsonl
from kotae.rag.abstention import NO_ANSWER


def train_sft(config: SFTRunConfig, console: Console, overwrite: bool = False) -> AdapterMetadata:
    check_target(config.out, overwrite)
    if config.examples is not None:
        built = read_examples(config.examples)
        data = DataRef(
            path=str(config.examples.resolve()), sha256=file_sha256(config.examples), rows=len(built.rows)
        )
    elif config.data is not None and config.index is not None:
        built = build_sft_examples(
            config.base,
            config.data,
            config.index,
            config.contexts,
            config.context_token_budget,
            config.seed,
            console,
            config.negatives,
        )
        data = built.info.contexts.source
    else:
        raise KotaeError("SFT needs --data and --index, or --examples")
    train, held = held_out_split(built.rows, config.eval_fraction, config.seed)
    probe_rows = (held or train)[: config.probe_count]
    run = RunData(
        kind="sft",
        train=[{"prompt": r.prompt, "completion": r.completion} for r in train],
        eval=[{"prompt": r.prompt, "completion": r.completion} for r in held],
        data=data,
        probes=[Probe(r.question, r.prompt, r.answers) for r in probe_rows],
        contexts=built.info.contexts,
    )
    return train_adapter(config, run, console, overwrite)


def build_sft_examples(
    base: Path,
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
    from transformers import AutoTokenizer

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
        count_tokens = TokenCounter(AutoTokenizer.from_pretrained(base))
    try:
        built = build_examples(
            data, index, opened, retriever, settings.retrieval, count_tokens, contexts, budget, seed
        )
        if negatives > 0:
            items = [item for _, item in read_qa_jsonl(data)]
            found = negative_examples(items, retriever, count_tokens, contexts, budget, negatives, seed)
            built = with_negatives(built, found)
            console.print(f"{len(found)} negative examples (the gold article left out, answer: {NO_ANSWER})")
    finally:
        opened.close()
    console.print(
        f"{built.info.examples} examples from {built.info.contexts.source.rows} questions "
        f"({built.info.contexts.dropped} dropped: the answer did not fit in the context budget or one chunk)"
    )
    return built
