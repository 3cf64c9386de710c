"""`kotae train cpt`: continued pre-training — next-token loss on raw passages (title + text)."""

from dataclasses import replace

from rich.console import Console

from kotae.adapters.atomic import check_target
from kotae.adapters.config import CPTRunConfig
from kotae.adapters.forgetting import KnowledgeProbe
from kotae.adapters.metadata import AdapterMetadata, DataRef
from kotae.adapters.rows import PassageRow, read_rows
from kotae.adapters.training import RunData, embedding_layers, held_out_split, train_adapter
from kotae.core.durable import file_sha256
from kotae.core.errors import InputError
from kotae.rag.prompt import DEFAULT_PROMPTER


def passage_text(title: str, text: str) -> str:
    """The title as a heading line, then the text: the passage's subject stays in what is learned."""
    return f"{title}\n{text}" if title else text


def train_cpt(config: CPTRunConfig, console: Console, overwrite: bool = False) -> AdapterMetadata:
    check_target(config.out, overwrite)
    if config.train_embeddings and not config.lora.modules_to_save:
        config = replace(config, lora=replace(config.lora, modules_to_save=embedding_layers(config.base)))
    texts = [{"text": passage_text(row.title, row.text)} for _, row in read_rows(config.text, PassageRow)]
    if not texts:
        raise InputError(config.text, None, "no passages")
    train, held = held_out_split(texts, config.eval_fraction, config.seed)
    # The probes watch the knowledge being learned: the knowledge probe's questions, without context, in
    # the default format (the SFT that follows the merge picks its own).
    probes = (
        KnowledgeProbe(config.knowledge_probe, DEFAULT_PROMPTER).probes() if config.knowledge_probe else []
    )
    run = RunData(
        kind="cpt",
        train=train,
        eval=held,
        data=DataRef(path=str(config.text.resolve()), sha256=file_sha256(config.text), rows=len(texts)),
        probes=probes[: config.probe_count],
    )
    return train_adapter(config, run, console, overwrite)
